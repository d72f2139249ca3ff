"""Task adaptation: data splits, both arms for every N, resume from DONE markers, and the
real pipeline end to end at smoke size (slow)."""

import json
import pathlib

import pytest

from gramr2_jax import config_lib, synthetic
from gramr2_jax.downstream import adaptation
from tests.conftest import REPO


def load_config(arg: str = "smoke"):
    return config_lib.load_config_file(REPO / "configs" / "adaptation.py", arg)


def test_config_holds_out_the_category():
    config = load_config("held_out=safety")
    assert config.experiment == "adaptation"
    assert "safety" not in config.data.categories and config.adaptation.held_out == "safety"
    assert config.adaptation.sizes == [32, 64, 128, 256]


def test_adaptation_data_is_nested_disjoint_and_of_the_held_out_category(tmp_path):
    config = load_config()
    config.adaptation.sizes = [6, 10]
    config.adaptation.num_test = 8
    pool, test = adaptation.make_adaptation_data(config, tmp_path / "d")
    assert len(pool) == 10 and len(test) == 8
    assert {r["category"] for r in pool + test} == {"logic"}
    assert [r["difficulty"] for r in pool[:4]] == [0, 1, 0, 1]  # every prefix mixes them
    assert all(r["target"] and r["verdict"] in "AB" for r in pool)
    assert not {synthetic.labelled_key(r) for r in pool} & {synthetic.labelled_key(r) for r in test}
    again, _ = adaptation.make_adaptation_data(config, tmp_path / "d")
    assert again == pool


def test_config_rejects_a_held_out_category_the_foundation_saw(tmp_path):
    config = load_config()
    config.data.categories = list(config.data.categories) + ["logic"]
    with pytest.raises(ValueError, match="held_out"):
        adaptation.run(config, tmp_path)


def test_both_arms_per_size_and_resume_without_retraining(tmp_path, monkeypatch):
    """Training and evaluation replaced by fakes: which runs happen, and which are reused."""
    config = load_config()
    trained, evaluated = [], []
    models = {"foundation": tmp_path / "judge", "base": tmp_path / "base"}
    monkeypatch.setattr(adaptation, "pipeline_models",
                        lambda c, d: (models["foundation"], models["base"], "tokenizer"))

    def fake_train(config, stage, start_dir, rows, out_dir, tokenizer):
        trained.append((start_dir.name, len(rows)))
        return out_dir / "export"

    def fake_evaluate(judge, rows):
        evaluated.append(judge)
        # The foundation arm scores 0.2 higher, so the table's Δ column is checked.
        bonus = 0.2 if judge.parent.parent.name.startswith("foundation") else 0.0
        return {"accuracy": 0.3 + bonus, "abstain_rate": 0.0,
                "position_bias": 0.0, "faithfulness": 0.5}

    monkeypatch.setattr(adaptation.stages, "train_judge", fake_train)
    monkeypatch.setattr(adaptation.evaluation, "evaluate_judge", fake_evaluate)
    monkeypatch.setattr("gramr2_jax.judge.Judge.from_pretrained",
                        classmethod(lambda cls, path, **kw: pathlib.Path(path)))
    summary = adaptation.run(config, tmp_path / "w")
    sizes = config.adaptation.sizes
    assert sorted(trained) == sorted((name, n) for name in ("base", "judge") for n in sizes)
    assert len(evaluated) == 2 * len(sizes) + 1  # + the N = 0 foundation point
    out = json.loads((tmp_path / "w" / "adaptation.json").read_text())
    assert out == json.loads(json.dumps(summary))
    for arm in adaptation.ARMS:
        assert sorted(out["arms"][arm]) == sorted(str(n) for n in sizes)
    table = (tmp_path / "w" / "adaptation.md").read_text()
    assert all(f"| {n} |" in table for n in [0, *sizes]) and "+0.200" in table
    assert (tmp_path / "w" / "adaptation.png").stat().st_size > 1000

    trained.clear(), evaluated.clear()
    assert adaptation.run(config, tmp_path / "w") == summary
    assert trained == [] and evaluated == []


@pytest.mark.slow
def test_smoke_end_to_end_and_resume(tmp_path, monkeypatch):
    config = load_config("smoke")
    summary = adaptation.run(config, tmp_path)
    for arm in adaptation.ARMS:
        for n in config.adaptation.sizes:
            metrics = summary["arms"][arm][str(n)]
            assert 0.0 <= metrics["accuracy"] <= 1.0
            assert (tmp_path / f"{arm}_n{n}" / "train" / "DONE").exists()
    assert (tmp_path / "adaptation.png").exists() and (tmp_path / "adaptation.md").exists()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished stage was retrained")

    # Stages check their DONE markers themselves, so patch the trainer they would call.
    monkeypatch.setattr(adaptation.stages.trainer_lib, "train", no_training)
    assert adaptation.run(config, tmp_path) == json.loads(json.dumps(summary))
