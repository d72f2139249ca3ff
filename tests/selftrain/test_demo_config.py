"""configs/demo.py: ablations are one change to a base pipeline, and the sweep runs them."""

import pytest

from configs import demo
from gramr2_jax.selftrain import pipeline

NO_OPS = {("full", "prover"), ("full", "coherence"), ("full", "no_curriculum"),
          ("self_rationale", "own_rationale"), ("self_rationale", "strict_curriculum")}


def _changed(a, b):
    return set(pipeline.config_changes(a.to_dict(), b.to_dict()))


@pytest.mark.parametrize("base", demo.BASES)
@pytest.mark.parametrize("variant", [v for v in demo.VARIANTS if v not in demo.BASES])
def test_an_ablation_changes_its_own_fields_of_its_base_or_is_refused(base, variant):
    if (base, variant) in NO_OPS:
        with pytest.raises(ValueError, match=f"'{variant}' changes nothing of base '{base}'"):
            demo.get_config(f"variant={variant},base={base}")
        return
    ablation = demo.get_config(f"variant={variant},base={base}")
    reference = demo.get_config(f"variant={base}")
    assert _changed(ablation, reference) == set(demo._ABLATIONS[variant]) | {"variant"}


def test_the_default_is_full_and_ablations_default_to_base_full():
    assert demo.get_config().variant == "full"
    label_only = demo.get_config("variant=label_only")
    assert label_only.selftrain.rationale_source == "prover"  # full's, not self_rationale's
    assert label_only.selftrain.label_only
    old = demo.get_config("variant=label_only,base=self_rationale")
    assert old.selftrain.rationale_source == "self"
    assert old.selftrain.curriculum.start.kappa == 1.0 and old.selftrain.curriculum.end.tau == 0.8


def test_a_base_is_its_own_variant_whatever_base_says():
    assert not _changed(demo.get_config("variant=self_rationale,base=full"),
                        demo.get_config("variant=self_rationale,base=self_rationale"))


@pytest.mark.parametrize("arg", ["", "base=self_rationale", "base=full,sweep=label_only+no_filter"])
def test_sweep_points_as_flags_give_the_variant_config(arg):
    """launch/sweep.py passes the arg to get_config and the point's overrides as flags."""
    for point in demo.get_sweep(arg):
        from_flags = demo.get_config(arg)
        for key, value in point.items():
            section, _, field = key.rpartition(".")
            (from_flags[section] if section else from_flags)[field] = value
        direct = demo.get_config(f"{arg},variant={point['variant']}".lstrip(","))
        assert not _changed(from_flags, direct), point["variant"]


def test_default_sweeps_hold_no_no_op_and_bad_names_are_named():
    for base, variants in demo.DEFAULT_SWEEPS.items():
        assert not {(base, v) for v in variants} & NO_OPS
    with pytest.raises(ValueError, match="sweep: 'nope' is not one of"):
        demo.get_sweep("sweep=full+nope")
    with pytest.raises(ValueError, match="base: 'other' is not one of"):
        demo.get_config("base=other")


def test_model_layout_fields_reach_every_stage():
    from gramr2_jax import config_lib
    from gramr2_jax.selftrain import stages

    config = demo.get_config()
    assert config_lib.model_config(config.model).causal_blocks == 8  # stage 0's fresh model
    with config.unlocked():
        config.model.causal_blocks = 2
    assert config_lib.model_config(config.model).causal_blocks == 2
    for stage in (config.stage0, config.stage1, config.selftrain):
        assert stages.train_config(config, stage, 100)["causal_blocks"] == 2
