"""Per-round filter thresholds from config."""

import ml_collections
import pytest

from gramr2_jax.selftrain.curriculum import FilterThresholds, thresholds_for_round, validate

LINEAR = {
    "num_rounds": 3,
    "schedule": "linear",
    "base": {"sigma": None, "min_chars": 10},
    "start": {"kappa": 1.0, "tau": 0.9, "max_chars": 300},
    "end": {"kappa": 0.6, "tau": 0.6, "max_chars": 601},
}


def test_constant_schedule_uses_base_and_defaults():
    cfg = {"num_rounds": 2, "base": {"kappa": 0.9, "swap_agreement": False}}
    assert validate(cfg) == []
    for r in (1, 2):
        assert thresholds_for_round(cfg, r) == FilterThresholds(kappa=0.9, swap_agreement=False)


def test_linear_schedule_goes_from_strict_to_loose():
    rounds = [thresholds_for_round(LINEAR, r) for r in (1, 2, 3)]
    assert [t.kappa for t in rounds] == [1.0, 0.8, 0.6]
    assert [t.tau for t in rounds] == pytest.approx([0.9, 0.75, 0.6])
    assert [t.max_chars for t in rounds] == [300, 450, 601]  # 450.5 rounds to even
    assert all(t.min_chars == 10 and t.sigma is None for t in rounds)


def test_single_round_linear_uses_start():
    cfg = dict(LINEAR, num_rounds=1)
    assert thresholds_for_round(cfg, 1).kappa == 1.0


def test_explicit_schedule_and_switching_filters_off():
    cfg = {
        "num_rounds": 2,
        "schedule": "explicit",
        "base": {"tau": 0.8},
        "rounds": [{"kappa": 1.0, "sigma": 0.9}, {"kappa": None, "rationale_rules": False}],
    }
    first, second = thresholds_for_round(cfg, 1), thresholds_for_round(cfg, 2)
    assert (first.kappa, first.tau, first.sigma, first.rationale_rules) == (1.0, 0.8, 0.9, True)
    assert (second.kappa, second.tau, second.sigma, second.rationale_rules) == (None, 0.8, None, False)


def test_config_dict_input():
    cfg = ml_collections.ConfigDict(LINEAR)
    assert validate(cfg) == []
    assert thresholds_for_round(cfg, 2) == thresholds_for_round(LINEAR, 2)
    cfg.end.kappa = 1.5
    assert validate(cfg) == ["curriculum.end.kappa: must be a number in [0, 1] or None, got 1.5"]


@pytest.mark.parametrize(
    "cfg, error",
    [
        ({"num_rounds": 0}, "curriculum.num_rounds: must be an integer >= 1"),
        ({"num_rounds": 2, "schedule": "cosine"}, "curriculum.schedule: must be one of"),
        ({"num_rounds": 2, "kapa": 0.5}, "curriculum.kapa: unknown field"),
        ({"num_rounds": 2, "base": {"kapa": 0.5}}, "curriculum.base.kapa: unknown field"),
        ({"num_rounds": 2, "base": {"tau": "high"}}, "curriculum.base.tau: must be a number"),
        ({"num_rounds": 2, "base": {"swap_agreement": 1}}, "curriculum.base.swap_agreement: must be True or False"),
        ({"num_rounds": 2, "base": {"min_chars": 50, "max_chars": 10}}, "curriculum.base.max_chars: must be >= min_chars"),
        ({"num_rounds": 2, "schedule": "explicit", "rounds": [{}]}, "curriculum.rounds: must list 2 rounds"),
        ({"num_rounds": 2, "schedule": "explicit", "rounds": [{}, {"sigma": 2}]}, "curriculum.rounds[1].sigma"),
        ({"num_rounds": 2, "schedule": "linear", "start": {}}, "curriculum.end: required by schedule 'linear'"),
        (dict(LINEAR, end={"kappa": 0.6, "tau": None, "max_chars": 600}), "curriculum.end.tau: None in only one"),
        (dict(LINEAR, end={"kappa": 0.6}), "curriculum.end.max_chars: must be set in both"),
        (dict(LINEAR, start=dict(LINEAR["start"], swap_agreement=True)), "curriculum.start.swap_agreement: only numeric"),
        ({"num_rounds": 2, "rounds": [{}, {}]}, "curriculum.rounds: not used by schedule 'constant'"),
    ],
)
def test_validate_names_the_field(cfg, error):
    errors = validate(cfg)
    assert any(e.startswith(error) for e in errors), errors
    with pytest.raises(ValueError, match="invalid curriculum config"):
        thresholds_for_round(cfg, 1)


def test_round_out_of_range():
    with pytest.raises(ValueError, match="curriculum.num_rounds"):
        thresholds_for_round(LINEAR, 4)
    with pytest.raises(ValueError, match="round must be in 1..3"):
        thresholds_for_round(LINEAR, 0)


def test_thresholds_validate_themselves():
    with pytest.raises(ValueError, match="thresholds.kappa"):
        FilterThresholds(kappa=1.2)
