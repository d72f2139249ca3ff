"""One self-training round with labelling, training and evaluation replaced by fakes."""

import json
import pathlib

import pytest

from configs import demo
from gramr2_jax.data import judge_format
from gramr2_jax.selftrain import artifacts, rounds
from gramr2_jax.selftrain.filters import JudgmentSample, PairJudgments

POOL = [{"id": f"p{i}", "category": "logic", "prompt": f"Question {i}?",
         "response_a": f"Right {i}.", "response_b": f"Wrong {i}.", "gold": "A"} for i in range(4)]
PREVIOUS = {"round": 0, "model_dir": "judge0", "num_train_rows": 16,
            "test_id/accuracy": 0.625, "test_ood/accuracy": 0.5}


def _judgment(verdict, swapped=False):
    shown = {"A": "B", "B": "A"}[verdict] if swapped else verdict
    text = judge_format.format_judgment(
        f"Feedback: checked. Conclusion: Response {shown} is better.", shown)
    return JudgmentSample(verdict, 0.99, 0.99 if verdict == "A" else 0.01, text)


def _records(agree: bool):
    """Every pair judged A twice in the original order; once in the swapped order, A again
    or not (then the majority is still A, but the swap filter drops it)."""
    return [PairJudgments(p["id"], [_judgment("A")] * 2,
                          [_judgment("A" if agree else "B", swapped=True)]) for p in POOL]


@pytest.fixture
def fakes(monkeypatch):
    calls = {"train": [], "evaluate": []}
    monkeypatch.setattr(rounds.label, "label_pool", lambda *a, **k: None)

    def train_judge(config, stage, start_dir, rows, out_dir, tokenizer):
        calls["train"].append((start_dir, rows))
        return out_dir / "export"

    def evaluate_all(judge, tests, synthetic):
        calls["evaluate"].append(judge)
        return {"test_id/accuracy": 0.75, "test_ood/accuracy": 0.5}

    monkeypatch.setattr(rounds.stages, "train_judge", train_judge)
    monkeypatch.setattr(rounds, "evaluate_all", evaluate_all)
    return calls


def _run(tmp_path, monkeypatch, agree, **selftrain):
    monkeypatch.setattr(rounds.label, "read_labels", lambda *a: _records(agree))
    config = demo.get_config("smoke=True,variant=self_rationale")
    config.selftrain.update(num_rounds=1, **selftrain)
    return rounds.run_round(config, tmp_path, 1, tokenizer=None, base_dir=pathlib.Path("base"),
                            judge_dir=pathlib.Path("judge0"),
                            seed_judge_dir=pathlib.Path("seed_judge"), seed_rows=[{"id": "s"}] * 16,
                            pool=POOL, earlier_kept=[], make_judge=lambda d: f"judge@{d}",
                            tests={}, previous=PREVIOUS)


def test_round_that_keeps_no_pair_carries_the_previous_judge_forward(tmp_path, monkeypatch, fakes):
    metrics = _run(tmp_path, monkeypatch, agree=False)  # the swap filter drops every pair
    assert fakes["train"] == [] and fakes["evaluate"] == []
    assert metrics["label/kept"] == 0 and metrics["drops"]["swap"] == len(POOL)
    assert metrics["retrained"] is False and metrics["model_dir"] == "judge0"
    assert metrics["test_id/accuracy"] == 0.625 and metrics["num_train_rows"] == 16
    assert artifacts.read_jsonl(tmp_path / "round_1" / "kept.jsonl") == []
    # No kept pair, so no precision: written as null, as strict JSON readers need.
    assert json.loads((tmp_path / "round_1" / "metrics.json").read_text(),
                      parse_constant=pytest.fail)["label/precision"] is None
    assert metrics["label/precision"] is None  # returned as a resumed run reads it
    assert artifacts.is_done(tmp_path / "round_1")


@pytest.mark.parametrize("retrain_from,start", [("previous", "judge0"), ("seed", "seed_judge"),
                                                ("base", "base")])
def test_round_that_keeps_pairs_retrains_on_seed_plus_kept(tmp_path, monkeypatch, fakes,
                                                           retrain_from, start):
    metrics = _run(tmp_path, monkeypatch, agree=True, retrain_from=retrain_from)
    [(start_dir, rows)] = fakes["train"]
    assert start_dir == pathlib.Path(start) and len(rows) == 16 + len(POOL)
    assert [r["verdict"] for r in rows[16:]] == ["A"] * len(POOL)
    assert fakes["evaluate"] == [f"judge@{tmp_path / 'round_1' / 'train' / 'export'}"]
    assert metrics["retrained"] is True and metrics["label/kept"] == len(POOL)
    assert metrics["test_id/accuracy"] == 0.75 and metrics["label/precision"] == 1.0


def test_report_says_which_rounds_carried_the_previous_judge(tmp_path, monkeypatch, fakes):
    pytest.importorskip("matplotlib")
    from gramr2_jax.selftrain import report

    history = [PREVIOUS, _run(tmp_path, monkeypatch, agree=False)]
    report.write_report(tmp_path, history, {}, demo.get_config("smoke=True,variant=self_rationale"))
    text = (tmp_path / "report.md").read_text()
    assert "Round(s) 1 kept no pair and did not retrain" in text
    # the carried round's judge is the final one: the report names the directory to load
    assert "The final judge" in text and "`judge0`" in text
    assert (tmp_path / "accuracy.png").stat().st_size > 0


def test_report_names_the_final_judge_relative_to_the_workdir(tmp_path):
    from gramr2_jax.selftrain import report

    inside = [PREVIOUS, {"round": 2, "model_dir": str(tmp_path / "round_2" / "train" / "export")}]
    assert report._final_judge_dir(tmp_path, inside) == "round_2/train/export"
    outside = [{"round": 0, "model_dir": "/cache/stage1/train/export"}]
    assert report._final_judge_dir(tmp_path, outside) == "/cache/stage1/train/export"


def test_round_thresholds_switch_coherence_off_with_the_other_filters():
    config = demo.get_config("smoke=True,variant=self_rationale")
    config.selftrain.curriculum.base.coherence = True
    assert rounds.round_thresholds(config.selftrain, 1).coherence is True
    config.selftrain.filters_enabled = False
    assert rounds.round_thresholds(config.selftrain, 1).coherence is False


ARITHMETIC = {"id": "q", "category": "arithmetic", "prompt": "What is 5 + 2?",
              "response_a": "5 + 2 = 20. The answer is 20.",
              "response_b": "5 + 2 = 7. The answer is 7.", "gold": "B"}


def _arithmetic_sample(fact_value, p):
    rationale = (f"Feedback: 5 + 2 = {fact_value}. Response A answers 20, so it is wrong. "
                 "Response B answers 7, so it is correct. Comparison: only Response B is "
                 "correct. Conclusion: Response B is better.")
    return JudgmentSample("B", p, 1 - p, judge_format.format_judgment(rationale, "B"))


def _coherence_round(workdir, data_source):
    config = demo.get_config("smoke=True,variant=self_rationale")
    config.data.source = data_source
    config.selftrain.update(num_rounds=1, swap=False)
    config.selftrain.curriculum.base.update(coherence=True, swap_agreement=False)
    config.selftrain.curriculum.start.update(kappa=0.5, tau=0.5)
    config.selftrain.curriculum.end.update(kappa=0.5, tau=0.5)
    return rounds.run_round(config, workdir, 1, tokenizer=None, base_dir=pathlib.Path("base"),
                            judge_dir=pathlib.Path("judge0"),
                            seed_judge_dir=pathlib.Path("seed_judge"), seed_rows=[],
                            pool=[ARITHMETIC], earlier_kept=[], make_judge=lambda d: d, tests={},
                            previous=PREVIOUS)


def test_coherence_in_a_round_keeps_the_coherent_rationale(tmp_path, monkeypatch, fakes):
    # Two samples agree on B; the more confident one says 5 + 2 = 20 and still calls the
    # response answering 20 wrong: incoherent, so the other one is the training rationale.
    record = PairJudgments("q", [_arithmetic_sample(20, 0.99), _arithmetic_sample(7, 0.9)])
    monkeypatch.setattr(rounds.label, "read_labels", lambda *a: [record])
    assert _coherence_round(tmp_path / "a", "synthetic")["label/kept"] == 1
    [(_, [row])] = fakes["train"]
    assert row["rationale"].startswith("Feedback: 5 + 2 = 7.")
    with pytest.raises(ValueError, match="coherence needs data.source 'synthetic'"):
        _coherence_round(tmp_path / "b", "files")


@pytest.mark.parametrize("agree", [False, True])
def test_the_prover_is_trained_only_when_a_round_keeps_pairs(tmp_path, monkeypatch, fakes, agree):
    trained = []
    monkeypatch.setattr(rounds.prover, "train_prover", lambda *a: trained.append(a) or "prover")
    monkeypatch.setattr(rounds.prover, "prove", lambda config, d, rows, **k: (rows, 0))
    metrics = _run(tmp_path, monkeypatch, agree, rationale_source="prover")
    assert len(trained) == (1 if agree else 0)
    assert metrics["retrained"] is agree


def test_report_gives_the_larger_tests_paired_interval(tmp_path):
    pytest.importorskip("matplotlib")
    from gramr2_jax.selftrain import report

    def sets(accuracy):
        return {f"difficulty_{d}": {"accuracy": accuracy, "num_pairs": 500} for d in (0, 1)}

    larger = {"stage1": sets(0.6), "last": sets(0.65),
              "difference": {"difficulty_0": {"delta": 0.05, "ci95": 0.031}}}
    report.write_report(tmp_path, [PREVIOUS], {}, demo.get_config("smoke=True"), larger)
    text = (tmp_path / "report.md").read_text()
    assert "| difficulty_0 | 500 | 0.600 | 0.650 | +0.050 | ± 0.031 |" in text
    assert "| difficulty_1 | 500 | 0.600 | 0.650 | +0.050 | – |" in text  # judged before
