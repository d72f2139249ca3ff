"""Pseudo-label filters for self-training (SPEC §2, stage 2 step 2; method.md (c)).

Input per unlabelled pair: k sampled judgments with the pair in its original
order and k with the responses swapped. Every sample's ``verdict`` and ``p_a``
are in the ORIGINAL pair's frame (build samples with ``sample_from_generation``,
which maps swapped-order verdicts back); its ``text`` stays as generated, so a
swapped sample's rationale names the responses as the model saw them.

Filters, each switchable through FilterThresholds (None / False = off):
  vote        share of ALL samples voting for the majority label >= kappa
              (abstains stay in the denominator, so they count against)
  confidence  mean p(majority label) over samples with a probability >= tau
              (with tau_quantile: tau = that quantile of the labelled pairs' confidences)
  swap        majority label in original order == majority in swapped order
  rationale   some agreeing sample has well-formed tags, a rationale of
              min_chars..max_chars with the required sections, and a
              "Conclusion:" naming the same response as its verdict;
              with coherence on, also a rationale whose claims agree with each
              other, judged by a domain's checker (filter_pairs' `coherence`,
              e.g. synthetic.rationale.check_coherence): a rule on the text,
              which never sees a gold label
  self_check  some agreeing sample has teacher-forced p(verdict | rationale) >= sigma
A pair with no majority (all abstain, or a tie that p_a does not break: see
majority_label) is dropped as "no_label".
The kept pair's rationale is the agreeing sample, among those passing the
rationale and self-check filters, with the highest p_verdict.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np

from gramr2_jax.data import judge_format
from gramr2_jax.data.prompts import swap_response_names
from gramr2_jax.sampling import verdict as verdict_lib
from gramr2_jax.selftrain.curriculum import FilterThresholds

FILTER_NAMES = ("no_label", "vote", "confidence", "swap", "rationale", "self_check")
_OTHER = {"A": "B", "B": "A"}
_NAMED_RE = re.compile(r"\b(?:Response|Assistant)\s+([AB])\b")
_NAMED_BETTER_RE = re.compile(r"\b(?:Response|Assistant)\s+([AB])\b[^.]*?\bis (?:better|preferred)")

# (pair_id, rationale, verdict) -> problems, () if coherent; rationale and verdict in the
# ORIGINAL pair's frame.
CoherenceCheck = Callable[[str, str, "str | None"], Sequence[str]]


def to_original_frame(verdict: str | None, swapped: bool) -> str | None:
    """A verdict given with the responses swapped, expressed for the original order."""
    return _OTHER[verdict] if swapped and verdict is not None else verdict


@dataclasses.dataclass(frozen=True)
class JudgmentSample:
    verdict: str | None  # "A" | "B" | None (abstain), original frame
    p_verdict: float | None  # p(this verdict), softmax over the two verdict tokens
    p_a: float | None  # probability the ORIGINAL response A is better
    text: str  # the generated judgment, in the order the model saw
    self_check_prob: float | None = None  # teacher-forced p(verdict | rationale), if computed
    # log p_a / (1 - p_a), which does not round off as p_a does; None: derived from p_a
    log_odds_a: float | None = None


def recorded(x: float | None) -> float | None:
    """A judge sample's p_first / log_odds_first as sample_from_generation takes them (and
    label shards store them): a Python float, or None where the sampler recorded nothing
    (NaN)."""
    return None if x is None or math.isnan(x) else float(x)


def sample_from_generation(
    text: str, p_first: float | None, *, swapped: bool, self_check_prob: float | None = None,
    log_odds_first: float | None = None,
) -> JudgmentSample:
    """A sample from generated text and p("A" token) at its answer position, as shown to the
    model (and its log-odds log p("A") / p("B"), when recorded).

    The verdict is parsed from the text (judge_format rules) and mapped to the original frame.
    """
    verdict = to_original_frame(judge_format.parse_verdict(text), swapped)
    p_a = None if p_first is None else (1.0 - p_first if swapped else p_first)
    p_verdict = None if verdict is None or p_a is None else (p_a if verdict == "A" else 1.0 - p_a)
    log_odds_a = None
    if p_a is not None and log_odds_first is not None:
        log_odds_a = -log_odds_first if swapped else log_odds_first
    return JudgmentSample(verdict, p_verdict, p_a, text, self_check_prob, log_odds_a)


@dataclasses.dataclass(frozen=True)
class PairJudgments:
    pair_id: str
    original: Sequence[JudgmentSample]
    swapped: Sequence[JudgmentSample] = ()


@dataclasses.dataclass(frozen=True)
class FilterResult:
    pair_id: str
    keep: bool
    label: str | None  # the pseudo-label (majority verdict), original frame
    reasons: tuple[str, ...]  # names of the failed filters (FILTER_NAMES); empty when kept
    vote_agreement: float
    confidence: float
    rationale_order: str | None = None  # "original" | "swapped"; set only when kept
    rationale_index: int | None = None  # index into that order's samples
    rationale_text: str | None = None  # the chosen sample's generated text


@dataclasses.dataclass(frozen=True)
class FilterStats:
    total: int
    kept: int
    kept_by_label: dict[str, int]  # position balance of what is kept
    drops_by_reason: dict[str, int]  # a dropped pair counts once for each failed filter
    tau: float | None = None  # the confidence threshold applied (set from tau_quantile or not)


def conclusion_names(rationale: str) -> str | None:
    """The response the rationale's last "Conclusion:" names as better, or None if unclear."""
    start = rationale.rfind("Conclusion:")
    if start < 0:
        return None
    conclusion = rationale[start + len("Conclusion:"):]
    better = _NAMED_BETTER_RE.search(conclusion)
    if better:
        return better.group(1)
    named = set(_NAMED_RE.findall(conclusion))
    return named.pop() if len(named) == 1 else None


def rationale_problems(text: str, thresholds: FilterThresholds) -> list[str]:
    """Why a generated judgment's rationale fails the rule checks ([] if it passes)."""
    judgment = judge_format.parse_judgment(text)
    if not judgment.well_formed:
        return ["malformed tags"]
    rationale = judgment.rationale or ""
    problems = []
    if not thresholds.min_chars <= len(rationale) <= thresholds.max_chars:
        bounds = f"[{thresholds.min_chars}, {thresholds.max_chars}]"
        problems.append(f"length {len(rationale)} outside {bounds}")
    problems += [
        f"missing section {section!r}"
        for section in thresholds.required_sections
        if section not in rationale
    ]
    # Both in the frame the model saw, so no mapping is needed here.
    if conclusion_names(rationale) != judgment.verdict:
        problems.append("conclusion does not name the verdict")
    return problems


def majority_label(samples: Sequence[JudgmentSample]) -> str | None:
    """The judge's rule (sampling.verdict.vote): most votes; a tie goes to the side of 1/2
    the mean p_a lies on, decided exactly from the log-odds (p_a of 0 and 1 in the two
    orders still decide); exactly 1/2, no p_a, or no votes at all -> None."""
    log_odds = [verdict_lib.log_odds(s.p_a) if s.log_odds_a is None else s.log_odds_a
                for s in samples if s.p_a is not None]
    return verdict_lib.vote([s.verdict for s in samples], log_odds)


def _confidence(samples: Sequence[JudgmentSample], label: str) -> float:
    probs = [s.p_a if label == "A" else 1.0 - s.p_a for s in samples if s.p_a is not None]
    return sum(probs) / len(probs) if probs else 0.0


def filter_pair(record: PairJudgments, thresholds: FilterThresholds,
                coherence: CoherenceCheck | None = None) -> FilterResult:
    """Applies the enabled filters to one pair's samples."""
    samples = list(record.original) + list(record.swapped)
    if not samples:
        raise ValueError(f"pair {record.pair_id!r} has no judgment samples")
    if thresholds.checks_coherence and coherence is None:
        raise ValueError("thresholds.coherence is on but no coherence checker was given")
    if thresholds.swap_agreement and not (record.original and record.swapped):
        raise ValueError(f"pair {record.pair_id!r}: swap_agreement needs samples in both orders")
    label = majority_label(samples)
    if label is None:
        return FilterResult(record.pair_id, False, None, ("no_label",), 0.0, 0.0)

    agreement = sum(s.verdict == label for s in samples) / len(samples)
    confidence = _confidence(samples, label)
    reasons = []
    if thresholds.kappa is not None and agreement < thresholds.kappa:
        reasons.append("vote")
    if thresholds.tau is not None and confidence < thresholds.tau:
        reasons.append("confidence")
    if thresholds.swap_agreement and majority_label(record.original) != majority_label(record.swapped):
        reasons.append("swap")

    candidates = [
        _Candidate(order, index, sample)
        for order, group in (("original", record.original), ("swapped", record.swapped))
        for index, sample in enumerate(group)
        if sample.verdict == label
    ]
    if thresholds.rationale_rules:
        check = coherence if thresholds.checks_coherence else None
        passing = [c for c in candidates if _rationale_ok(c, label, thresholds, record.pair_id, check)]
        if not passing:
            reasons.append("rationale")
        candidates = passing or candidates
    if thresholds.sigma is not None:
        checked = [c for c in candidates if _self_check_prob(c, record.pair_id) >= thresholds.sigma]
        if not checked:
            reasons.append("self_check")
        candidates = checked or candidates

    if reasons:
        return FilterResult(record.pair_id, False, label, tuple(reasons), agreement, confidence)
    # Highest p_verdict; max() keeps the first of equals, so original order wins ties.
    best = max(candidates, key=lambda c: -1.0 if c.sample.p_verdict is None else c.sample.p_verdict)
    return FilterResult(
        record.pair_id, True, label, (), agreement, confidence, best.order, best.index, best.sample.text
    )


class _Candidate(NamedTuple):
    """A sample agreeing with the label, as a possible training rationale."""

    order: str  # "original" | "swapped"
    index: int
    sample: JudgmentSample


def _rationale_ok(candidate: _Candidate, label: str, thresholds: FilterThresholds,
                  pair_id: str, coherence: CoherenceCheck | None) -> bool:
    text = candidate.sample.text
    # The text's own verdict must be the label too: the text is what gets trained on.
    swapped = candidate.order == "swapped"
    text_verdict = to_original_frame(judge_format.parse_verdict(text), swapped)
    if text_verdict != label or rationale_problems(text, thresholds):
        return False
    if coherence is None:
        return True
    rationale = judge_format.parse_judgment(text).rationale or ""
    return not coherence(pair_id, swap_response_names(rationale) if swapped else rationale, label)


def _self_check_prob(candidate: _Candidate, pair_id: str) -> float:
    if candidate.sample.self_check_prob is None:
        raise ValueError(f"pair {pair_id!r}: self-check filter is on but a sample has no self_check_prob")
    return candidate.sample.self_check_prob


def filter_pairs(
    records: Iterable[PairJudgments], thresholds: FilterThresholds,
    coherence: CoherenceCheck | None = None,
) -> tuple[list[FilterResult], FilterStats]:
    """Filters every pair; returns the per-pair results and the aggregate counts.

    coherence: the domain's rationale checker, used when thresholds.coherence is on."""
    records = list(records)
    if thresholds.tau_quantile is not None:
        tau = quantile_tau(records, thresholds.tau_quantile)
        thresholds = dataclasses.replace(thresholds, tau=tau, tau_quantile=None)
    results = [filter_pair(record, thresholds, coherence) for record in records]
    return results, summarize(results, thresholds.tau)


def quantile_tau(records: Sequence[PairJudgments], q: float) -> float | None:
    """The q-quantile (lower) of the confidences of the pairs that get a majority label;
    None (no confidence filter) when no pair gets one."""
    confidences = []
    for record in records:
        samples = list(record.original) + list(record.swapped)
        label = majority_label(samples)
        if label is not None:
            confidences.append(_confidence(samples, label))
    if not confidences:
        return None
    return float(np.quantile(np.asarray(confidences), q, method="lower"))


def summarize(results: Sequence[FilterResult], tau: float | None = None) -> FilterStats:
    kept = [r for r in results if r.keep]
    drops = collections.Counter(reason for r in results for reason in r.reasons)
    return FilterStats(
        total=len(results),
        kept=len(kept),
        kept_by_label={v: sum(r.label == v for r in kept) for v in judge_format.VERDICTS},
        drops_by_reason={name: drops[name] for name in FILTER_NAMES},
        tau=tau,
    )
