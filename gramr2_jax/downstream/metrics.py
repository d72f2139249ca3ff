"""Evaluation metrics over per-pair judge results (RewardBench, RM-Bench, JudgeBench style).

Counting rules used everywhere:
- Gold ties (label "tie") are left out of accuracy and counted in `ties_excluded`.
- An abstain (verdict None) counts as wrong: it stays in the denominator, and the abstain rate
  is reported beside the accuracy so the two effects can be told apart.
- A group with no scorable pair has accuracy nan; nan groups are skipped in averages.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

LABELS = ("A", "B", "tie")
VERDICTS = ("A", "B", None)

# RewardBench v1 sections (allenai/reward-bench, rewardbench/constants.py SUBSET_MAPPING).
REWARDBENCH_SECTIONS: dict[str, tuple[str, ...]] = {
    "chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy",
             "mt-bench-med"),
    "chat-hard": ("mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor",
                  "llmbar-adver-GPTInst", "llmbar-adver-GPTOut", "llmbar-adver-manual"),
    "safety": ("refusals-dangerous", "refusals-offensive", "xstest-should-refuse",
               "xstest-should-respond", "donotanswer"),
    "reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python",
                  "hep-rust"),
}
# The official leaderboard weights subsets by these counts inside a section (math-prm is
# up-weighted from 447 to 984 to equal the code subsets); pass as `weights` to reproduce it.
REWARDBENCH_EXAMPLE_COUNTS: dict[str, int] = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95,
    "mt-bench-easy": 28, "mt-bench-med": 40, "mt-bench-hard": 37, "llmbar-natural": 100,
    "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92, "llmbar-adver-GPTOut": 47,
    "llmbar-adver-manual": 46, "refusals-dangerous": 100, "refusals-offensive": 100,
    "xstest-should-refuse": 154, "xstest-should-respond": 250, "donotanswer": 136,
    "math-prm": 984, "hep-cpp": 164, "hep-go": 164, "hep-java": 164, "hep-js": 164,
    "hep-python": 164, "hep-rust": 164,
}
# JudgeBench source prefix → group (sources look like "mmlu-pro-biology", "livecodebench").
JUDGEBENCH_GROUPS: dict[str, str] = {
    "mmlu-pro": "knowledge",
    "livebench-reasoning": "reasoning",
    "livebench-math": "math",
    "livecodebench": "coding",
}
# RM-Bench response styles, the index order of PairResult.style.
RMBENCH_STYLES = ("concise", "detailed_plain", "detailed_markdown")


@dataclasses.dataclass(frozen=True)
class PairResult:
    """One judged pair.

    For chosen/rejected data shown as (chosen, rejected), label is "A" and p_a is p_chosen.
    section: overrides the section mapping (or names the RM-Bench domain) for this pair.
    style: RM-Bench (chosen style, rejected style), indices into RMBENCH_STYLES.
    """

    subset: str
    verdict: str | None
    label: str = "A"
    p_a: float | None = None
    section: str | None = None
    style: tuple[int, int] | None = None

    def __post_init__(self):
        if self.label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {self.label!r}")
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.p_a is not None and not 0.0 <= self.p_a <= 1.0:
            raise ValueError(f"p_a must be in [0, 1], got {self.p_a!r}")

    @classmethod
    def from_p_chosen(cls, p_chosen: float, subset: str, **fields) -> "PairResult":
        """A scalar-scored pair shown as (chosen, rejected); p exactly 0.5 is an abstain."""
        verdict = "A" if p_chosen > 0.5 else "B" if p_chosen < 0.5 else None
        return cls(subset=subset, verdict=verdict, label="A", p_a=p_chosen, **fields)


@dataclasses.dataclass(frozen=True)
class Accuracy:
    correct: int
    total: int  # scored pairs: gold ties excluded, abstains included (as wrong)
    abstained: int
    ties_excluded: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else math.nan

    @property
    def abstain_rate(self) -> float:
        return self.abstained / self.total if self.total else math.nan


def _mean(values: Iterable[float], weights: Iterable[float] | None = None) -> float:
    """Mean (weighted if weights given) over the non-nan values; nan when none is left."""
    values = list(values)
    weights = [1.0] * len(values) if weights is None else list(weights)
    kept = [(v, w) for v, w in zip(values, weights) if not math.isnan(v)]
    total_weight = sum(w for _, w in kept)
    return sum(v * w for v, w in kept) / total_weight if total_weight else math.nan


def accuracy(results: Iterable[PairResult]) -> Accuracy:
    correct = total = abstained = ties = 0
    for result in results:
        if result.label == "tie":
            ties += 1
            continue
        total += 1
        abstained += result.verdict is None
        correct += result.verdict == result.label
    return Accuracy(correct, total, abstained, ties)


def accuracy_by(results: Iterable[PairResult], key: Callable[[PairResult], str | None]
                ) -> dict[str, Accuracy]:
    """Accuracy per group; pairs whose key is None are left out."""
    groups: dict[str, list[PairResult]] = {}
    for result in results:
        name = key(result)
        if name is not None:
            groups.setdefault(name, []).append(result)
    return {name: accuracy(group) for name, group in groups.items()}


def subset_accuracy(results: Iterable[PairResult]) -> dict[str, Accuracy]:
    return accuracy_by(results, lambda r: r.subset)


@dataclasses.dataclass(frozen=True)
class SectionScores:
    sections: dict[str, float]  # section → mean of its subsets' accuracies
    overall: float  # mean of the sections that have data
    subsets: dict[str, Accuracy]
    unassigned: tuple[str, ...]  # subsets with no section: reported, not averaged
    missing_sections: tuple[str, ...]  # mapped sections without any scored subset


def section_scores(results: Sequence[PairResult],
                   sections: Mapping[str, Sequence[str]] = REWARDBENCH_SECTIONS,
                   weights: Mapping[str, float] | None = None) -> SectionScores:
    """RewardBench-style: per-subset accuracy → section mean → overall = mean of sections.

    Within a section the subsets are averaged equally (as GRAM's script does) unless `weights`
    gives a weight per subset (REWARDBENCH_EXAMPLE_COUNTS reproduces the official leaderboard).
    A pair's own `section` field takes precedence over the mapping.
    """
    section_of = {subset: name for name, subsets in sections.items() for subset in subsets}
    for result in results:
        if result.section is not None:
            section_of[result.subset] = result.section
    subsets = subset_accuracy(results)
    members: dict[str, list[str]] = {}
    for subset in subsets:
        if subset in section_of:
            members.setdefault(section_of[subset], []).append(subset)
    scores = {}
    for name, names in members.items():
        subset_weights = None if weights is None else [weights[s] for s in names]
        scores[name] = _mean([subsets[s].accuracy for s in names], subset_weights)
    return SectionScores(
        sections=scores,
        overall=_mean(scores.values()),
        subsets=subsets,
        unassigned=tuple(sorted(s for s in subsets if s not in section_of)),
        missing_sections=tuple(name for name in sections if name not in members),
    )


@dataclasses.dataclass(frozen=True)
class StyleMatrix:
    """RM-Bench accuracies; matrix[i, j] = accuracy with chosen in style i, rejected in style j."""

    matrix: np.ndarray
    counts: np.ndarray

    @property
    def hard(self) -> float:  # chosen plainer than rejected: the style bias works against it
        return _mean(self.matrix[np.triu_indices(3, k=1)])

    @property
    def normal(self) -> float:
        return _mean(np.diag(self.matrix))

    @property
    def easy(self) -> float:
        return _mean(self.matrix[np.tril_indices(3, k=-1)])

    @property
    def average(self) -> float:
        return _mean(self.matrix.reshape(-1))


@dataclasses.dataclass(frozen=True)
class RMBenchScores:
    domains: dict[str, StyleMatrix]
    overall: float  # mean of the domain averages (how RM-Bench and the paper report "overall")


def rm_bench(results: Iterable[PairResult]) -> RMBenchScores:
    """RM-Bench 3×3 style matrices per domain (domain = `section` if set, else `subset`).

    Each cell is the accuracy over the pairs with that (chosen, rejected) style; pairs without
    a style are ignored. hard / normal / easy = upper triangle / diagonal / lower triangle.
    """
    by_domain: dict[str, list[PairResult]] = {}
    for result in results:
        if result.style is not None:
            by_domain.setdefault(result.section or result.subset, []).append(result)
    domains = {}
    for domain, pairs in by_domain.items():
        matrix, counts = np.full((3, 3), math.nan), np.zeros((3, 3), dtype=int)
        for i in range(3):
            for j in range(3):
                cell = accuracy(r for r in pairs if tuple(r.style) == (i, j))
                matrix[i, j], counts[i, j] = cell.accuracy, cell.total
        domains[domain] = StyleMatrix(matrix, counts)
    return RMBenchScores(domains, _mean(m.average for m in domains.values()))


@dataclasses.dataclass(frozen=True)
class GroupScores:
    groups: dict[str, Accuracy]
    overall_per_item: float  # pooled over every pair of every group
    overall_group_mean: float  # mean of group accuracies; the paper's JudgeBench "overall"
    unassigned: tuple[str, ...]


def judgebench(results: Sequence[PairResult],
               groups: Mapping[str, str] = JUDGEBENCH_GROUPS) -> GroupScores:
    """JudgeBench groups, a pair's group found by the longest matching subset prefix.

    Both overalls are given: the paper's Table 1 matches the mean of the four groups (e.g. 8B:
    (90.9 + 83.7 + 87.5 + 61.9) / 4 = 81.0), not the per-item pool.
    """
    prefixes = sorted(groups, key=len, reverse=True)

    def group_of(result: PairResult) -> str | None:
        return next((groups[p] for p in prefixes if result.subset.startswith(p)), None)

    per_group = accuracy_by(results, group_of)
    return GroupScores(
        groups=per_group,
        overall_per_item=accuracy(r for r in results if group_of(r) is not None).accuracy,
        overall_group_mean=_mean(a.accuracy for a in per_group.values()),
        unassigned=tuple(sorted({r.subset for r in results if group_of(r) is None})),
    )


@dataclasses.dataclass(frozen=True)
class PositionBias:
    flipped: int  # the same slot won in both orders, i.e. the preferred response changed
    compared: int  # pairs with a verdict in both orders
    abstained: int  # pairs with an abstain in either order (not in `compared`)
    first_slot: int  # flips where slot A won both times (the rest favoured slot B)

    @property
    def rate(self) -> float:
        return self.flipped / self.compared if self.compared else math.nan


def position_bias(verdicts: Sequence[str | None], verdicts_swapped: Sequence[str | None]
                  ) -> PositionBias:
    """Share of pairs whose verdict flips under order swap.

    verdicts_swapped[i] is the verdict on pair i shown as (B, A), in that showing's letters, so
    a consistent judge answers the opposite letter.
    """
    if len(verdicts) != len(verdicts_swapped):
        raise ValueError(f"{len(verdicts)} verdicts but {len(verdicts_swapped)} swapped ones")
    flipped = compared = abstained = first_slot = 0
    for verdict, swapped in zip(verdicts, verdicts_swapped):
        if verdict is None or swapped is None:
            abstained += 1
            continue
        compared += 1
        if verdict == swapped:
            flipped += 1
            first_slot += verdict == "A"
    return PositionBias(flipped, compared, abstained, first_slot)


@dataclasses.dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    mean_p_a: float  # mean predicted p(A ≻ B); nan for an empty bin
    frac_a: float  # observed share of pairs where A is gold; nan for an empty bin


@dataclasses.dataclass(frozen=True)
class Calibration:
    ece: float
    bins: tuple[ReliabilityBin, ...]
    count: int  # pairs used: p_a known and gold not a tie


def calibration(results: Iterable[PairResult], num_bins: int = 10) -> Calibration:
    """Expected calibration error of p(A ≻ B) as a probability that A is gold.

    Equal-width bins over [0, 1] ([lo, hi), the last one closed);
    ECE = sum over bins of (count / N) * |mean p_a − share of A gold|.
    """
    scored = [r for r in results if r.p_a is not None and r.label != "tie"]
    p_a = np.array([r.p_a for r in scored], dtype=np.float64)
    a_gold = np.array([r.label == "A" for r in scored], dtype=np.float64)
    bin_ids = np.minimum((p_a * num_bins).astype(int), num_bins - 1)
    bins, ece = [], 0.0
    for b in range(num_bins):
        in_bin = bin_ids == b
        count = int(in_bin.sum())
        mean_p = float(p_a[in_bin].mean()) if count else math.nan
        frac_a = float(a_gold[in_bin].mean()) if count else math.nan
        if count:
            ece += count / len(scored) * abs(mean_p - frac_a)
        bins.append(ReliabilityBin(b / num_bins, (b + 1) / num_bins, count, mean_p, frac_a))
    return Calibration(ece if scored else math.nan, tuple(bins), len(scored))
