"""The larger held-out test sets drawn for a finished run."""

import pathlib

import pytest

from configs import demo
from gramr2_jax import synthetic
from gramr2_jax.selftrain import artifacts, extra_eval, stage0


def _data(workdir: pathlib.Path) -> list[dict]:
    stage0.make_data(demo.get_config("smoke=True"), workdir)
    return [r for name in ("seed", "unlabelled", "test_id", "test_ood")
            for r in artifacts.read_jsonl(workdir / "data" / f"{name}.jsonl")]


def test_extra_sets_are_fresh_disjoint_and_reproducible(tmp_path):
    rows = _data(tmp_path)
    sets = extra_eval.extra_test_sets(tmp_path, 32, [0, 1, 2])
    assert list(sets) == ["difficulty_0", "difficulty_1", "difficulty_2"]
    run_keys = {synthetic.pair_key(r["prompt"], r["response_a"], r["response_b"]) for r in rows}
    seen = set()
    for name, pairs in sets.items():
        assert len(pairs) == 32
        assert {p["difficulty"] for p in pairs} == {int(name[-1])}
        assert {p["category"] for p in pairs} == {r["category"] for r in rows}
        for p in pairs:
            key = synthetic.pair_key(p["prompt"], p["response_a"], p["response_b"])
            assert key not in run_keys and key not in seen
            seen.add(key)
            task = synthetic.parse_task(p["prompt"])  # gold is the good response
            assert task.is_good(p["response_a"] if p["gold"] == "A" else p["response_b"])
    assert extra_eval.extra_test_sets(tmp_path, 32, [0, 1, 2]) == sets
    assert extra_eval.extra_test_sets(tmp_path, 32, [0], seed=1)["difficulty_0"] != sets["difficulty_0"]


def test_a_used_up_category_gives_fewer_pairs_instead_of_failing(tmp_path):
    _data(tmp_path)
    [pairs] = extra_eval.extra_test_sets(tmp_path, 4000, [0]).values()
    logic = [p for p in pairs if p["category"] == "logic"]
    assert 0 < len(logic) < 850  # every distinct easy logic pair there is, less the run's
    keys = {synthetic.pair_key(p["prompt"], p["response_a"], p["response_b"]) for p in pairs}
    assert len(keys) == len(pairs)


def test_judges_are_found_from_the_workdir_layout(tmp_path):
    for stage, metrics in (("stage1", {"round": 0}), ("round_1", {"retrained": True}),
                           ("round_2", {"retrained": False})):
        artifacts.write_json(tmp_path / stage / "metrics.json", {**metrics, "model_dir": "moved"})
        artifacts.mark_done(tmp_path / stage)
    assert extra_eval.judge_dir(tmp_path, "stage1") == ("stage1", tmp_path / "stage1/train/export")
    # round 2 kept no pair: it carries round 1's judge forward
    assert extra_eval.judge_dir(tmp_path, "last") == ("round_2", tmp_path / "round_1/train/export")
    with pytest.raises(ValueError, match="round_3"):
        extra_eval.judge_dir(tmp_path, "round_3")


def test_cached_metrics_are_reused_only_for_the_same_pairs(tmp_path, monkeypatch):
    from gramr2_jax import judge as judge_lib
    from gramr2_jax.selftrain import evaluation

    _data(tmp_path)
    artifacts.write_json(tmp_path / "stage1" / "metrics.json", {"round": 0})
    artifacts.mark_done(tmp_path / "stage1")
    judged = []
    monkeypatch.setattr(judge_lib.Judge, "from_pretrained", staticmethod(lambda path, **kw: path))
    monkeypatch.setattr(evaluation, "evaluate_judge_per_pair", lambda judge, rows: (
        judged.append(len(rows)) or ({"accuracy": 0.5}, [True, False] * (len(rows) // 2))))

    def run():
        return extra_eval.evaluate_run(tmp_path, ["stage1"], 8, [0, 1])

    first = run()
    assert judged == [8, 8]
    assert first == {"stage1": {f"difficulty_{d}": {"accuracy": 0.5, "num_pairs": 8}
                                for d in (0, 1)}}
    assert run() == first and judged == [8, 8]  # cached
    cache = tmp_path / "extra_eval" / "stage1-n8-seed0.json"
    stored = artifacts.read_json(cache)
    stored["difficulty_1"]["pairs_sha256"] = "0" * 64  # drawn from other pairs
    del stored["difficulty_0"]["pairs_sha256"]  # written before sets carried a digest
    artifacts.write_json(cache, stored)
    assert run() == first and judged == [8, 8, 8, 8]


STAGE1_RIGHT = [1, 1, 0, 0, 1, 0, 1, 0]
ROUND1_RIGHT = [1, 1, 1, 0, 1, 1, 0, 0]


def _two_judges(tmp_path, monkeypatch):
    """A run with a finished stage 1 and round 1, whose judges get the pairs of each set
    right as STAGE1_RIGHT and ROUND1_RIGHT say."""
    from gramr2_jax import judge as judge_lib
    from gramr2_jax.selftrain import evaluation

    _data(tmp_path)
    for stage in ("stage1", "round_1"):
        artifacts.write_json(tmp_path / stage / "metrics.json", {"retrained": True})
        artifacts.mark_done(tmp_path / stage)
    right = {"stage1": STAGE1_RIGHT, "round_1": ROUND1_RIGHT}
    monkeypatch.setattr(judge_lib.Judge, "from_pretrained", staticmethod(lambda path, **kw: path))
    monkeypatch.setattr(evaluation, "evaluate_judge_per_pair", lambda judge, rows: (
        {"accuracy": sum(right[judge.parts[-3]]) / len(rows)},
        [bool(c) for c in right[judge.parts[-3]]]))


def test_paired_difference_over_the_same_pairs(tmp_path, monkeypatch):
    import statistics

    _two_judges(tmp_path, monkeypatch)
    report = extra_eval.evaluate_run(tmp_path, ["stage1", "last"], 8, [0, 1])
    # the per-pair outcomes stay in the cache, out of the metrics
    assert report["stage1"]["difficulty_0"] == {"accuracy": 0.5, "num_pairs": 8}
    stored = artifacts.read_json(tmp_path / "extra_eval" / "stage1-n8-seed0.json")
    assert stored["difficulty_0"]["correct"] == "11001010"

    diff = [b - a for a, b in zip(STAGE1_RIGHT, ROUND1_RIGHT)]  # 0 0 1 0 0 1 -1 0
    ci95 = 1.96 * statistics.stdev(diff) / 8 ** 0.5
    assert ci95 == pytest.approx(0.4441, abs=1e-4)
    expected = {"delta": 0.125, "ci95": pytest.approx(ci95)}
    paired = extra_eval.paired_difference(tmp_path, "stage1", "last", 8)
    assert paired == {"difficulty_0": expected, "difficulty_1": expected}
    assert paired["difficulty_0"]["delta"] == (report["last"]["difficulty_0"]["accuracy"]
                                               - report["stage1"]["difficulty_0"]["accuracy"])

    # A set judged before outcomes were kept, or on other pairs, is left out.
    cache = tmp_path / "extra_eval" / "round_1-n8-seed0.json"
    stored = artifacts.read_json(cache)
    del stored["difficulty_0"]["correct"]
    stored["difficulty_1"]["pairs_sha256"] = "0" * 64
    artifacts.write_json(cache, stored)
    assert extra_eval.paired_difference(tmp_path, "stage1", "last", 8) == {}


def test_run_defaults_read_the_runs_own_larger_test_from_its_config(tmp_path):
    config = demo.get_config("smoke=True")
    artifacts.write_json(tmp_path / "config.json", config.to_dict())
    assert extra_eval.run_defaults(tmp_path) == (16, [0, 1, 2])  # smoke: 16 pairs; training 0, 1, OOD 2
    config.larger_test.num_per_difficulty = 0  # the run had none
    config.data.train_difficulties, config.data.ood_difficulty = [0], 3
    artifacts.write_json(tmp_path / "config.json", config.to_dict())
    assert extra_eval.run_defaults(tmp_path) == (extra_eval.DEFAULT_NUM, [0, 3])
    artifacts.write_json(tmp_path / "config.json", {"seed": 0})
    with pytest.raises(ValueError, match="config.json: data.train_difficulties"):
        extra_eval.run_defaults(tmp_path)
