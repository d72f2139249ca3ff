"""Held-out evaluation of a judge on the synthetic test sets (gold labels known).

Each test pair is judged greedily in both orders. The judge's verdict is the
majority of the two parsed verdicts (in the original frame); when they disagree
the side of 1/2 the order-averaged p(A ≻ B) lies on decides, exactly even where
both probabilities round to 0 or 1 (filters.majority_label); with no parsed
verdict it abstains, which counts as wrong. Reported per category and overall:
  accuracy, abstain rate, position-bias rate (the two orders give different
  verdicts, among pairs where both gave one), and rationale faithfulness (share
  of original-order judgments whose checkable claims are all true and whose
  conclusion matches the verdict, checked from the pair's texts alone).
"""

from __future__ import annotations

import collections
from typing import Any, Sequence

from gramr2_jax import synthetic
from gramr2_jax.data import judge_format
from gramr2_jax.selftrain.filters import majority_label, recorded, sample_from_generation


def pair_verdict(original, swapped) -> tuple[str | None, bool | None]:
    """(verdict, flipped) of one pair from its greedy judgment in each order."""
    samples = [sample_from_generation(s.text, recorded(s.p_first), swapped=swapped,
                                      log_odds_first=recorded(s.log_odds_first))
               for s, swapped in ((original, False), (swapped, True))]
    v1, v2 = (s.verdict for s in samples)
    flipped = None if v1 is None or v2 is None else v1 != v2
    return majority_label(samples), flipped


def evaluate_judge(judge, rows: Sequence[dict[str, Any]], *,
                   check_faithfulness: bool = True) -> dict[str, float]:
    """Metrics of a generative judge on rows with prompt/response_a/response_b/gold/category.

    check_faithfulness needs the synthetic domain (its claims are checked by program)."""
    return evaluate_judge_per_pair(judge, rows, check_faithfulness=check_faithfulness)[0]


def evaluate_judge_per_pair(judge, rows: Sequence[dict[str, Any]], *,
                            check_faithfulness: bool = True
                            ) -> tuple[dict[str, float], list[bool]]:
    """evaluate_judge's metrics, and whether each row's verdict was right (in row order):
    what a paired comparison of two judges on the same rows needs."""
    judged = judge.sample_judgments(
        [r["prompt"] for r in rows], [r["response_a"] for r in rows],
        [r["response_b"] for r in rows], num_samples=1, swap=True, greedy=True, seed=0)
    per_category: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    correct = []
    for row, pj in zip(rows, judged):
        verdict, flipped = pair_verdict(pj.original[0], pj.swapped[0])
        correct.append(verdict == row["gold"])
        stats = per_category[row["category"]]
        stats["n"] += 1
        stats["correct"] += correct[-1]
        stats["abstain"] += verdict is None
        if flipped is not None:
            stats["both"] += 1
            stats["flipped"] += flipped
        if check_faithfulness:
            original = judge_format.parse_judgment(pj.original[0].text)
            check = synthetic.check_rationale(row, original.rationale or "", original.verdict)
            stats["faithful"] += check.faithful
    return summarize(per_category), correct


def summarize(per_category: dict[str, collections.Counter]) -> dict[str, float]:
    out: dict[str, float] = {}
    total: collections.Counter = collections.Counter()
    for category, stats in sorted(per_category.items()):
        total.update(stats)
        out[f"accuracy/{category}"] = stats["correct"] / stats["n"]
    out["accuracy"] = total["correct"] / max(total["n"], 1)
    out["abstain_rate"] = total["abstain"] / max(total["n"], 1)
    out["position_bias"] = total["flipped"] / total["both"] if total["both"] else float("nan")
    if "faithful" in total:
        out["faithfulness"] = total["faithful"] / max(total["n"], 1)
    return out
