"""round_study: a finished round retrained with one thing changed."""

import json
import subprocess
import sys

import pytest

from configs import demo
from gramr2_jax import synthetic
from gramr2_jax.selftrain import artifacts, pipeline, round_study
from tests.conftest import REPO, subprocess_env


def _slice():
    pairs = synthetic.make_split(["arithmetic", "constraint", "safety", "logic"], 12, 0, 3)
    return synthetic.to_unlabelled(pairs, "study")


def _kept(pool_slice):
    """Every second pair kept; the first kept one with the wrong pseudo-label."""
    rows = []
    for i, p in enumerate(pool_slice[::2]):
        wrong = i == 0
        verdict = ("B" if p["gold"] == "A" else "A") if wrong else p["gold"]
        rows.append({k: p[k] for k in ("id", "category", "prompt", "response_a", "response_b")}
                    | {"verdict": verdict, "rationale": f"recorded {i}"})
    return rows


def test_round_rows_change_only_what_is_asked():
    pool_slice = _slice()
    kept = _kept(pool_slice)
    same = round_study.round_rows(kept, pool_slice, train_on="kept", labels="pseudo",
                                  rationales="recorded")
    assert same == kept
    correct = round_study.round_rows(kept, pool_slice, train_on="kept_correct",
                                     labels="pseudo", rationales="recorded")
    assert correct == kept[1:]
    gold = round_study.round_rows(kept, pool_slice, train_on="kept", labels="gold",
                                  rationales="recorded")
    assert [r["verdict"] for r in gold] == [
        next(p["gold"] for p in pool_slice if p["id"] == r["id"]) for r in kept]
    assert [r["rationale"] for r in gold] == [r["rationale"] for r in kept]
    bare = round_study.round_rows(kept, pool_slice, train_on="kept", labels="pseudo",
                                  rationales="none")
    assert {r["rationale"] for r in bare} == {""}
    assert [r["verdict"] for r in bare] == [r["verdict"] for r in kept]
    assert round_study.round_rows(kept, pool_slice, train_on="none", labels="pseudo",
                                  rationales="recorded") == []


def test_rule_rationales_and_the_whole_slice_are_gold_and_faithful():
    pool_slice = _slice()
    kept = _kept(pool_slice)
    for train_on, n in (("kept", len(kept)), ("slice", len(pool_slice))):
        rows = round_study.round_rows(kept, pool_slice, train_on=train_on, labels="gold",
                                      rationales="rule")
        stats = round_study.row_stats(rows, pool_slice)
        assert stats == {"rows": n, "precision": 1.0, "faithfulness": 1.0}
    recorded = round_study.row_stats(kept, pool_slice)
    assert recorded["precision"] == (len(kept) - 1) / len(kept)
    assert recorded["faithfulness"] == 0.0  # "recorded i" states no checkable claim


@pytest.mark.parametrize("train_on,labels,rationales,message", [
    ("kept", "pseudo", "rule", "needs --labels=gold"),
    ("slice", "pseudo", "none", "--train_on=slice"),
    ("slice", "gold", "recorded", "--train_on=slice"),
    ("all", "gold", "rule", "choose from"),
])
def test_impossible_combinations_are_named(train_on, labels, rationales, message):
    pool_slice = _slice()
    with pytest.raises(ValueError, match=message):
        round_study.round_rows(_kept(pool_slice), pool_slice, train_on=train_on, labels=labels,
                               rationales=rationales)


@pytest.mark.slow
def test_the_study_retrains_a_smoke_round_reproducibly_from_the_command_line(tmp_path):
    """The smoke judge writes no verdicts, so its rounds keep nothing: round 1's kept.jsonl
    is written here (8 pairs of its slice, 2 with the wrong label). On the real demo, the
    unchanged round 1 of seed 0 retrained to the run's own judge (selftrain/RESULTS.md)."""
    env = subprocess_env()
    config = "--config=configs/demo.py:smoke"
    run = subprocess.run([sys.executable, "-m", "gramr2_jax.main", config,
                          f"--workdir={tmp_path / 'run'}"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    pool = artifacts.read_jsonl(tmp_path / "run" / "data" / "unlabelled.jsonl")[:16]
    kept = _kept(pool[:8]) + _kept(pool[8:16])  # every second pair; 2 wrong labels
    artifacts.write_jsonl(tmp_path / "run" / "round_1" / "kept.jsonl", kept)

    def study(out, *flags):
        done = subprocess.run(
            [sys.executable, "-m", "gramr2_jax.selftrain.round_study", config,
             f"--workdir={tmp_path / 'run'}", "--round=1", f"--out={tmp_path / out}",
             "--larger_test=4", *flags], cwd=REPO, env=env, capture_output=True, text=True,
            timeout=900)
        return done.returncode, done.stdout, done.stderr

    code, out, err = study("same")
    assert code == 0, err[-3000:]
    same = json.loads(out)
    assert same["round_rows/rows"] == 8 and same["round_rows/precision"] == 0.75
    assert {f"larger_test/difficulty_{d}/accuracy" for d in (0, 1, 2)} <= same.keys()
    weights = "train/export/model.safetensors"  # it trained: the judge is not stage 1's
    assert (tmp_path / "same" / weights).read_bytes() != (
        tmp_path / "run" / "stage1" / weights).read_bytes()
    code, again, err = study("same")  # the finished training is reused: the same judge
    assert code == 0 and json.loads(again) == same, err[-3000:]

    code, out, err = study("oracle", "--labels=gold", "--rationales=rule")
    assert code == 0, err[-3000:]
    oracle = json.loads(out)
    assert oracle["round_rows/rows"] == 8
    assert oracle["round_rows/precision"] == oracle["round_rows/faithfulness"] == 1.0

    code, _, err = study("bad", "--train_on=slice")
    assert code == 2 and "--train_on=slice" in err and "Traceback" not in err
    code, _, err = study("other", "--config.data.seed=5")
    assert code == 2 and "data.seed" in err and "Traceback" not in err


def test_kept_pairs_outside_the_configs_round_slice_are_a_config_error(tmp_path):
    config = demo.get_config("smoke=True")  # 2 rounds of a 32-pair pool: 16 per round
    pool = synthetic.to_unlabelled(synthetic.make_split(["arithmetic"], 32, 0, 1), "pool")
    artifacts.write_jsonl(tmp_path / "data" / "unlabelled.jsonl", pool)
    artifacts.write_jsonl(tmp_path / "data" / "seed.jsonl", [])
    artifacts.write_jsonl(tmp_path / "round_1" / "kept.jsonl", _kept(pool[20:24]))
    artifacts.mark_done(tmp_path / "round_1")
    with pytest.raises(ValueError, match="2 kept pairs .* not in round 1's slice"):
        round_study.run(config, tmp_path, 1, tmp_path / "out")
    with pytest.raises(ValueError, match="not a finished round"):
        round_study.run(config, tmp_path, 2, tmp_path / "out")
    ran = demo.get_config("smoke=True")
    ran.data.seed = 7
    pipeline.record_config(ran, tmp_path)
    with pytest.raises(ValueError, match=r"differs from the run's .* in data\.seed:"):
        round_study.run(config, tmp_path, 1, tmp_path / "out")

