"""Metrics on small hand-computed cases."""

import math

import numpy as np
import pytest

from gramr2_jax.downstream import metrics
from gramr2_jax.downstream.metrics import PairResult


def pairs(subset, verdicts, labels=None, **fields):
    labels = labels or ["A"] * len(verdicts)
    return [PairResult(subset, v, label, **fields) for v, label in zip(verdicts, labels)]


REWARDBENCH_LIKE = (
    pairs("alpacaeval-easy", ["A", "A", "B"])  # 2/3
    + pairs("alpacaeval-hard", ["A", None])  # 1/2, one abstain
    + pairs("mt-bench-hard", ["B", "A", "A"], ["B", "B", "tie"])  # 1/2, one tie excluded
    + pairs("math-prm", ["A"])  # 1/1
    + pairs("hep-go", ["B"])  # 0/1
    + pairs("custom-x", ["A"])  # in no section
)


def test_accuracy_counts_abstains_as_wrong_and_excludes_ties():
    acc = metrics.accuracy(REWARDBENCH_LIKE)
    assert (acc.correct, acc.total, acc.abstained, acc.ties_excluded) == (6, 10, 1, 1)
    assert acc.accuracy == pytest.approx(6 / 10)
    assert acc.abstain_rate == pytest.approx(1 / 10)


def test_subset_accuracy():
    subsets = metrics.subset_accuracy(REWARDBENCH_LIKE)
    assert subsets["alpacaeval-easy"].accuracy == pytest.approx(2 / 3)
    assert subsets["alpacaeval-hard"].accuracy == pytest.approx(1 / 2)
    assert subsets["alpacaeval-hard"].abstained == 1
    assert subsets["mt-bench-hard"].accuracy == pytest.approx(1 / 2)
    assert subsets["mt-bench-hard"].ties_excluded == 1
    assert subsets["hep-go"].accuracy == 0.0


def test_rewardbench_sections_are_means_of_subset_accuracies():
    scores = metrics.section_scores(REWARDBENCH_LIKE)
    assert scores.sections["chat"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert scores.sections["chat-hard"] == pytest.approx(1 / 2)
    assert scores.sections["reasoning"] == pytest.approx((1 + 0) / 2)
    assert scores.overall == pytest.approx((7 / 12 + 1 / 2 + 1 / 2) / 3)
    assert scores.unassigned == ("custom-x",)
    assert scores.missing_sections == ("safety",)


def test_rewardbench_official_weighting():
    scores = metrics.section_scores(REWARDBENCH_LIKE, weights=metrics.REWARDBENCH_EXAMPLE_COUNTS)
    assert scores.sections["chat"] == pytest.approx((2 / 3 * 100 + 1 / 2 * 95) / 195)
    assert scores.sections["reasoning"] == pytest.approx(984 / (984 + 164))


def test_pair_section_overrides_the_mapping():
    results = REWARDBENCH_LIKE + pairs("my-refusals", ["A", "B"], section="safety")
    scores = metrics.section_scores(results)
    assert scores.sections["safety"] == pytest.approx(1 / 2)
    assert scores.missing_sections == ()


def test_only_ties_give_nan_without_crashing():
    results = pairs("alpacaeval-easy", ["A", "B"], ["tie", "tie"])
    assert math.isnan(metrics.accuracy(results).accuracy)
    scores = metrics.section_scores(results)
    assert math.isnan(scores.overall)
    assert scores.subsets["alpacaeval-easy"].ties_excluded == 2


def rm_bench_item(domain, wrong=(), abstain=()):
    """Nine pairs of one item; (i, j) = (chosen style, rejected style)."""
    return [PairResult(domain, None if (i, j) in abstain else "B" if (i, j) in wrong else "A",
                       style=(i, j)) for i in range(3) for j in range(3)]


def test_rm_bench_style_matrix():
    results = (rm_bench_item("chat", wrong={(0, 2)}, abstain={(0, 1)})
               + rm_bench_item("chat", wrong={(0, 2), (1, 2), (2, 0)})
               + rm_bench_item("math"))
    scores = metrics.rm_bench(results)
    chat = scores.domains["chat"]
    expected = np.array([[1.0, 0.5, 0.0],
                         [1.0, 1.0, 0.5],
                         [0.5, 1.0, 1.0]])
    np.testing.assert_allclose(chat.matrix, expected)
    assert np.all(chat.counts == 2)
    assert chat.hard == pytest.approx((0.5 + 0.0 + 0.5) / 3)
    assert chat.normal == pytest.approx(1.0)
    assert chat.easy == pytest.approx((1.0 + 0.5 + 1.0) / 3)
    assert chat.average == pytest.approx(6.5 / 9)
    assert scores.domains["math"].average == 1.0
    assert scores.overall == pytest.approx((6.5 / 9 + 1.0) / 2)


def test_judgebench_groups_and_both_overalls():
    results = (pairs("mmlu-pro-biology", ["A", "B"]) + pairs("mmlu-pro-law", ["A"])
               + pairs("livebench-reasoning", ["B"]) + pairs("livebench-math", ["A"])
               + pairs("livecodebench", ["A", "A"]) + pairs("other", ["A"]))
    scores = metrics.judgebench(results)
    assert scores.groups["knowledge"].accuracy == pytest.approx(2 / 3)
    assert scores.groups["reasoning"].accuracy == 0.0
    assert scores.groups["math"].accuracy == 1.0
    assert scores.groups["coding"].accuracy == 1.0
    assert scores.overall_per_item == pytest.approx(5 / 7)
    assert scores.overall_group_mean == pytest.approx((2 / 3 + 0 + 1 + 1) / 4)
    assert scores.unassigned == ("other",)


def test_position_bias():
    bias = metrics.position_bias(["A", "A", "B", None, "B", "A"],
                                 ["B", "A", "A", "B", "B", None])
    assert (bias.flipped, bias.compared, bias.abstained, bias.first_slot) == (2, 4, 2, 1)
    assert bias.rate == 0.5
    with pytest.raises(ValueError):
        metrics.position_bias(["A"], [])


def test_calibration_ece_and_reliability_table():
    results = [PairResult("s", "B", "B", p_a=0.1), PairResult("s", "B", "A", p_a=0.2),
               PairResult("s", "A", "A", p_a=0.6), PairResult("s", "A", "B", p_a=0.7),
               PairResult("s", "A", "A", p_a=0.9), PairResult("s", "A", "A", p_a=1.0),
               PairResult("s", "B", "tie", p_a=0.3),  # tie: excluded
               PairResult("s", "A", "A")]  # no probability: excluded
    cal = metrics.calibration(results, num_bins=4)
    assert cal.count == 6
    assert cal.ece == pytest.approx((2 * 0.35 + 2 * 0.15 + 2 * 0.05) / 6)
    assert [b.count for b in cal.bins] == [2, 0, 2, 2]
    assert (cal.bins[0].mean_p_a, cal.bins[0].frac_a) == pytest.approx((0.15, 0.5))
    assert math.isnan(cal.bins[1].mean_p_a)
    assert (cal.bins[3].lower, cal.bins[3].upper) == (0.75, 1.0)  # p = 1.0 lands in the last bin
    perfect = [PairResult("s", None, label, p_a=0.5) for label in ("A", "B")]
    assert metrics.calibration(perfect).ece == 0.0
    assert math.isnan(metrics.calibration([]).ece)


def test_scalar_scores_and_validation():
    results = [PairResult.from_p_chosen(p, "s") for p in (0.8, 0.3, 0.5)]
    assert [r.verdict for r in results] == ["A", "B", None]
    acc = metrics.accuracy(results)
    assert (acc.correct, acc.total, acc.abstained) == (1, 3, 1)
    for bad in ({"label": "C"}, {"verdict": "a"}, {"p_a": 1.5}):
        fields = {"subset": "s", "verdict": "A", **bad}
        with pytest.raises(ValueError):
            PairResult(**fields)
