"""Label shards: what `label_pool` writes per sample and what `read_labels` makes of it."""

import json
import math

from gramr2_jax.data import judge_format
from gramr2_jax.judge import PairJudgments, Sample
from gramr2_jax.selftrain import artifacts, label


class _StubJudge:
    """Answers "B" in every order, with the given p_first and log-odds."""

    def __init__(self, p_first, log_odds_first):
        self.sample = Sample(judge_format.format_judgment("Conclusion: Response B is better.",
                                                          "B"), "B", p_first, 9, log_odds_first)

    def compile_ahead(self, calls, **kwargs):
        list(calls)

    def sample_judgments(self, prompts, responses_a, responses_b, **kwargs):
        return [PairJudgments((self.sample,), (self.sample,)) for _ in prompts]


def _pool(n):
    return [{"id": f"p{i}", "prompt": "q", "response_a": "a", "response_b": "b"}
            for i in range(n)]


def test_shards_keep_the_log_odds_and_read_back_in_the_original_frame(tmp_path):
    label.label_pool(_StubJudge(0.0, -120.0), _pool(3), tmp_path, num_samples=1, swap=True,
                     temperature=1.0, seed=0, shard_size=2)
    rows = artifacts.read_jsonl(tmp_path / "shard_00000.jsonl")
    assert rows[0]["original"][0]["log_odds_first"] == -120.0
    assert rows[0]["original"][0]["p_first"] == 0.0
    records = label.read_labels(tmp_path, 3, shard_size=2)
    assert [r.pair_id for r in records] == ["p0", "p1", "p2"]
    original, swapped = records[0].original[0], records[0].swapped[0]
    assert (original.verdict, original.p_a, original.log_odds_a) == ("B", 0.0, -120.0)
    assert (swapped.verdict, swapped.p_a, swapped.log_odds_a) == ("A", 1.0, 120.0)


def test_a_missing_probability_is_written_as_null(tmp_path):
    label.label_pool(_StubJudge(math.nan, math.nan), _pool(1), tmp_path, num_samples=1,
                     swap=True, temperature=1.0, seed=0, shard_size=2)
    [row] = artifacts.read_jsonl(tmp_path / "shard_00000.jsonl")
    assert row["original"][0]["p_first"] is None
    assert row["original"][0]["log_odds_first"] is None
    [record] = label.read_labels(tmp_path, 1, shard_size=2)
    assert record.original[0].p_a is None and record.original[0].log_odds_a is None


def test_shards_from_before_the_log_odds_still_read(tmp_path):
    text = judge_format.format_judgment("Conclusion: Response A is better.", "A")
    old = {"id": "p0", "original": [{"text": text, "p_first": 0.75}],
           "swapped": [{"text": text, "p_first": 0.5}]}
    (tmp_path / "shard_00000.jsonl").write_text(json.dumps(old) + "\n")
    [record] = label.read_labels(tmp_path, 1, shard_size=2)
    assert record.original[0].p_a == 0.75 and record.original[0].log_odds_a is None
    assert record.swapped[0].verdict == "B"
