"""Pseudo-label filters on hand-built judgment records."""

import dataclasses

import pytest

from gramr2_jax.data import judge_format
from gramr2_jax.selftrain import curriculum
from gramr2_jax.selftrain.filters import (
    FILTER_NAMES,
    JudgmentSample,
    PairJudgments,
    conclusion_names,
    filter_pair,
    filter_pairs,
    rationale_problems,
    sample_from_generation,
    to_original_frame,
)

ALL_OFF = curriculum.FilterThresholds(
    kappa=None, tau=None, sigma=None, swap_agreement=False, rationale_rules=False
)


def text(verdict, named=None, filler="Response A is fine. Response B is fine."):
    """A generated judgment whose conclusion names *named* (default: the verdict)."""
    rationale = f"Feedback: {filler} Conclusion: Response {named or verdict} is better."
    return judge_format.format_judgment(rationale, verdict)


def original(verdict, p=0.9, **kwargs):
    """A sample in the original order; p = probability of its own verdict."""
    p_first = p if verdict == "A" else 1 - p
    return sample_from_generation(text(verdict, **kwargs), p_first, swapped=False)


def swapped(verdict_seen, p=0.9, **kwargs):
    """A sample in swapped order; *verdict_seen* is what the model answered there."""
    p_first = p if verdict_seen == "A" else 1 - p
    return sample_from_generation(text(verdict_seen, **kwargs), p_first, swapped=True)


def only(**enabled):
    return dataclasses.replace(ALL_OFF, **enabled)


def test_swap_mapping():
    assert to_original_frame("A", swapped=True) == "B"
    assert to_original_frame("B", swapped=True) == "A"
    assert to_original_frame("A", swapped=False) == "A"
    assert to_original_frame(None, swapped=True) is None
    sample = swapped("A", p=0.8)  # the model saw original B first and picked it
    assert sample.verdict == "B"
    assert sample.p_a == pytest.approx(0.2) and sample.p_verdict == pytest.approx(0.8)
    abstain = sample_from_generation("<think>hm</think>", 0.6, swapped=True)
    assert abstain.verdict is None and abstain.p_verdict is None and abstain.p_a == pytest.approx(0.4)


def test_everything_off_keeps_any_majority():
    record = PairJudgments("p", [original("A"), original("B"), original("A")], [])
    result = filter_pair(record, ALL_OFF)
    assert result.keep and result.label == "A" and result.reasons == ()
    assert result.vote_agreement == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "verdicts, kappa, keep",
    [
        (["A", "A", "A", "A"], 1.0, True),
        (["A", "A", "A", "B"], 0.75, True),
        (["A", "A", "A", "B"], 0.8, False),
        (["A", "A", "A", None], 0.8, False),  # an abstain counts against agreement
        (["A", "A", "A", None], 0.75, True),
    ],
)
def test_vote_agreement(verdicts, kappa, keep):
    samples = [
        original(v) if v else sample_from_generation("no answer", None, swapped=False) for v in verdicts
    ]
    result = filter_pair(PairJudgments("p", samples), only(kappa=kappa))
    assert result.keep is keep
    assert result.label == "A"
    assert result.reasons == (() if keep else ("vote",))


def test_confidence_is_the_mean_probability_of_the_majority_label():
    # p(A) per sample: 0.9, 0.8, and 0.3 from a B vote -> mean 2/3.
    samples = [original("A", p=0.9), original("A", p=0.8), original("B", p=0.7)]
    record = PairJudgments("p", samples)
    assert filter_pair(record, only(tau=0.66)).keep
    result = filter_pair(record, only(tau=0.67))
    assert not result.keep and result.reasons == ("confidence",)
    assert result.confidence == pytest.approx(2 / 3)


def test_swap_agreement_uses_the_original_frame():
    # In swapped order the model answering "B" means original A: consistent.
    consistent = PairJudgments("p", [original("A"), original("A")], [swapped("B"), swapped("B")])
    assert filter_pair(consistent, only(swap_agreement=True)).keep
    # Answering "A" in both orders is position bias, not a preference.
    biased = PairJudgments("p", [original("A"), original("A")], [swapped("A"), swapped("A"), swapped("A")])
    result = filter_pair(biased, only(swap_agreement=True))
    assert result.label == "B" and result.reasons == ("swap",)
    assert filter_pair(biased, ALL_OFF).keep


def test_swap_filter_requires_swapped_samples():
    with pytest.raises(ValueError, match="both orders"):
        filter_pair(PairJudgments("p", [original("A")]), only(swap_agreement=True))


def test_no_majority_is_dropped_even_with_filters_off():
    # Abstains may still carry p(A) from the answer position; without votes there is no label.
    all_abstain = [sample_from_generation("nothing", 0.9, swapped=False)] * 3
    result = filter_pair(PairJudgments("p", all_abstain), ALL_OFF)
    assert not result.keep and result.label is None and result.reasons == ("no_label",)
    # All abstain in one order: no majority there, so the swap filter drops the pair.
    one_sided = PairJudgments("p", [original("A")], all_abstain)
    assert filter_pair(one_sided, only(swap_agreement=True)).reasons == ("swap",)
    # A vote tie is broken by the mean p(A): 0.9 and 1 - 0.6.
    tie = PairJudgments("p", [original("A", p=0.9), original("B", p=0.6)])
    assert filter_pair(tie, ALL_OFF).label == "A"
    even = PairJudgments("p", [original("A", p=0.7), original("B", p=0.7)])
    assert filter_pair(even, ALL_OFF).reasons == ("no_label",)
    # p(A) of 1 and 0 (rounded) average to 1/2 exactly; their log-odds still decide, and
    # the more confident sample wins: 1 - p(A) = e^-40 for one, p(A) = e^-90 for the other.
    saturated = [sample_from_generation(text("A"), 1.0, swapped=False, log_odds_first=40.0),
                 sample_from_generation(text("B"), 0.0, swapped=False, log_odds_first=-90.0)]
    assert [s.log_odds_a for s in saturated] == [40.0, -90.0]
    assert filter_pair(PairJudgments("p", saturated), ALL_OFF).label == "B"
    saturated[1] = sample_from_generation(text("A"), 1.0, swapped=True, log_odds_first=30.0)
    assert saturated[1].verdict == "B" and saturated[1].log_odds_a == -30.0
    assert filter_pair(PairJudgments("p", saturated), ALL_OFF).label == "A"
    # Samples without log-odds (label shards from before they were recorded): a tie.
    rounded = [sample_from_generation(text(v), p, swapped=False) for v, p in (("A", 1.0), ("B", 0.0))]
    assert filter_pair(PairJudgments("p", rounded), ALL_OFF).reasons == ("no_label",)


def test_rationale_rules():
    rules = only(rationale_rules=True, min_chars=20, max_chars=120)
    assert rationale_problems(text("A"), rules) == []
    assert rationale_problems(text("A", named="B"), rules) == ["conclusion does not name the verdict"]
    assert rationale_problems(text("A", filler="x" * 200), rules) == ["length 244 outside [20, 120]"]
    assert rationale_problems("Conclusion: Response A is better. <answer>A</answer>", rules) == ["malformed tags"]
    no_feedback = judge_format.format_judgment("Conclusion: Response A is better, clearly so.", "A")
    assert rationale_problems(no_feedback, rules) == ["missing section 'Feedback:'"]

    good, wrong_conclusion = original("A", p=0.6), original("A", p=0.9, named="B")
    assert filter_pair(PairJudgments("p", [good, wrong_conclusion]), rules).keep
    result = filter_pair(PairJudgments("p", [wrong_conclusion, wrong_conclusion]), rules)
    assert result.reasons == ("rationale",)
    assert filter_pair(PairJudgments("p", [wrong_conclusion]), ALL_OFF).keep


def test_rationale_rules_read_swapped_text_in_its_own_frame():
    # The model saw the pair swapped, answered "B" (= original A) and its text concludes "Response B".
    record = PairJudgments("p", [original("B", p=0.55)], [swapped("B"), swapped("B")])
    result = filter_pair(record, only(rationale_rules=True))
    assert result.keep and result.label == "A"
    assert (result.rationale_order, result.rationale_index) == ("swapped", 0)
    assert conclusion_names(judge_format.parse_judgment(result.rationale_text).rationale) == "B"


def test_conclusion_names():
    assert conclusion_names("Feedback: Response B errs. Conclusion: Response A is better.") == "A"
    assert conclusion_names("Conclusion: Assistant B is preferred over Response A.") == "B"
    assert conclusion_names("Conclusion: Response B.") == "B"
    assert conclusion_names("Conclusion: Response B is worse than Response A.") is None
    assert conclusion_names("Response A is better.") is None


def test_self_check():
    def with_check(sample, prob):
        return dataclasses.replace(sample, self_check_prob=prob)

    record = PairJudgments("p", [with_check(original("A", p=0.95), 0.4), with_check(original("A", p=0.6), 0.8)])
    result = filter_pair(record, only(sigma=0.7))
    assert result.keep and result.rationale_index == 1  # the best p_verdict fails the self-check
    assert filter_pair(record, only(sigma=0.9)).reasons == ("self_check",)
    with pytest.raises(ValueError, match="self_check_prob"):
        filter_pair(PairJudgments("p", [original("A")]), only(sigma=0.5))


def test_chosen_rationale_is_the_most_confident_agreeing_sample():
    samples = [original("B", p=0.99), original("A", p=0.7), original("A", p=0.8), original("A", p=0.8)]
    result = filter_pair(PairJudgments("p", samples), ALL_OFF)
    assert result.label == "A"
    assert (result.rationale_order, result.rationale_index) == ("original", 2)  # first of the ties
    assert result.rationale_text == samples[2].text


def test_all_failed_filters_are_reported_and_counted():
    thresholds = curriculum.FilterThresholds(kappa=0.9, tau=0.9, sigma=None)
    noisy = PairJudgments("noisy", [original("A", p=0.6), original("B", p=0.55, named="A")], [swapped("A")])
    clean = PairJudgments("clean", [original("B"), original("B")], [swapped("A"), swapped("A")])
    results, stats = filter_pairs([noisy, clean], thresholds)
    assert [r.keep for r in results] == [False, True]
    assert results[0].reasons == ("vote", "confidence", "swap")
    assert results[1].label == "B" and results[1].rationale_order == "original"
    assert stats.total == 2 and stats.kept == 1
    assert stats.kept_by_label == {"A": 0, "B": 1}
    assert stats.drops_by_reason == {name: int(name in ("vote", "confidence", "swap")) for name in FILTER_NAMES}


def test_per_round_thresholds_change_what_is_kept():
    cfg = {"num_rounds": 3, "schedule": "linear", "start": {"kappa": 1.0, "tau": 0.9}, "end": {"kappa": 0.6, "tau": 0.6}}
    pair = PairJudgments("p", [original("A", p=0.8)] * 3, [swapped("B", p=0.8), swapped("A", p=0.6)])
    kept = [filter_pair(pair, curriculum.thresholds_for_round(cfg, r)).keep for r in (1, 2, 3)]
    assert kept == [False, False, True]  # agreement 0.8, confidence 0.72


def test_tau_quantile_sets_tau_from_the_rounds_own_confidences():
    # Confidences 0.55, 0.60, ..., 0.95 (every pair's majority is A); no majority: ignored.
    records = [PairJudgments(str(i), [original("A", p=0.55 + i / 20)]) for i in range(9)]
    records.append(PairJudgments("tie", [original("A", p=0.5), original("B", p=0.5)]))
    results, stats = filter_pairs(records, only(tau=0.99, tau_quantile=0.7))  # tau is replaced
    assert stats.tau == pytest.approx(0.80)  # the lower 0.7-quantile of the 9 confidences
    assert [r.pair_id for r in results if r.keep] == ["5", "6", "7", "8"]
    assert [r.reasons for r in results[:5]] == [("confidence",)] * 5
    assert results[-1].reasons == ("no_label",)
    # The same labels with every probability lower by 0.3: the same pairs pass.
    shifted = [PairJudgments(str(i), [original("A", p=0.25 + i / 20)]) for i in range(9)]
    results, stats = filter_pairs(shifted, only(tau_quantile=0.7))
    assert stats.tau == pytest.approx(0.50)
    assert [r.keep for r in results] == [False] * 5 + [True] * 4
    # A fixed tau passes none of the shifted pairs.
    assert filter_pairs(shifted, only(tau=0.8))[1].kept == 0


def test_tau_quantile_follows_the_curriculum():
    cfg = {"num_rounds": 3, "schedule": "linear", "start": {"tau": None, "tau_quantile": 0.8},
           "end": {"tau": None, "tau_quantile": 0.4}}
    records = [PairJudgments(str(i), [original("A", p=0.5 + i / 20)]) for i in range(1, 11)]
    kept = [filter_pairs(records, dataclasses.replace(curriculum.thresholds_for_round(cfg, r),
                                                      kappa=None, swap_agreement=False,
                                                      rationale_rules=False))[1].kept
            for r in (1, 2, 3)]
    assert kept == [3, 5, 7]  # the top 20 %, 40 %, 60 % (ties at the quantile pass)
    with pytest.raises(ValueError, match="tau_quantile: must be a number in"):
        curriculum.FilterThresholds(tau_quantile=1.5)


def test_deterministic():
    records = [PairJudgments(str(i), [original("A", p=0.5 + i / 20)], [swapped("B")]) for i in range(10)]
    assert filter_pairs(records, curriculum.FilterThresholds()) == filter_pairs(records, curriculum.FilterThresholds())


def test_samples_are_plain_values():
    sample = JudgmentSample("A", 0.9, 0.9, text("A"))
    assert filter_pair(PairJudgments("p", [sample]), ALL_OFF).keep


def test_coherence_picks_a_coherent_rationale_and_drops_pairs_without_one():
    seen = []

    def check(pair_id, rationale, verdict):  # a fake domain checker: "coherent" marks it
        seen.append((pair_id, rationale, verdict))
        return () if "coherent" in rationale else ("incoherent",)

    coherent = original("A", p=0.6, filler="Response A is coherent.")
    confident = original("A", p=0.95)
    record = PairJudgments("p", [confident, coherent])
    rules = only(rationale_rules=True)
    assert filter_pair(record, rules, check).rationale_index == 0  # coherence off: most confident
    assert seen == []
    result = filter_pair(record, only(rationale_rules=True, coherence=True), check)
    assert result.keep and result.rationale_index == 1
    assert [pair_id for pair_id, _, _ in seen] == ["p", "p"]

    dropped = filter_pair(PairJudgments("p", [confident, confident]),
                          only(rationale_rules=True, coherence=True), check)
    assert not dropped.keep and dropped.reasons == ("rationale",)
    # Coherence is part of the rationale rules: with those off (no_filter) it is not applied.
    assert filter_pair(PairJudgments("p", [confident]), only(coherence=True), check).keep


def test_coherence_reads_swapped_samples_in_the_original_frame():
    calls = []

    def check(pair_id, rationale, verdict):
        calls.append((rationale, verdict))
        return ()

    # The model saw the pair swapped and concluded "Response B" (= original A).
    record = PairJudgments("p", [], [swapped("B", filler="Response B is right.")])
    result = filter_pair(record, only(rationale_rules=True, coherence=True), check)
    assert result.keep and result.label == "A"
    assert calls == [("Feedback: Response A is right. Conclusion: Response A is better.", "A")]


def test_coherence_without_a_checker_is_an_error():
    with pytest.raises(ValueError, match="coherence"):
        filter_pair(PairJudgments("p", [original("A")]), only(rationale_rules=True, coherence=True))
