"""Benchmark evaluation of a pairwise judge: data specs → pairs → judge → metrics report.

A data spec is a built-in name (BUILTIN_SETS, resolved under the shared folder; `all` =
every one) or a path to a generic labelled JSONL. Generic rows:

    {"prompt", "chosen", "rejected", "subset"?, "section"?, "id"?}
    {"prompt", "chosen_variants": [3], "rejected_variants": [3], "subset"?, "section"?, "id"?}

The second form is RM-Bench style: the lists hold one response in each style of
metrics.RMBENCH_STYLES (concise, detailed_plain, detailed_markdown), and the row becomes
the 9 (chosen style i, rejected style j) pairs of the 3×3 matrix. `subset` defaults to
the file name without extension; `section` (else the RewardBench mapping of the subset)
groups subsets for section averages.

Order: in each set exactly half the pairs (a seeded choice) show chosen as A, so a judge
that always answers A scores 50%. `limit` keeps a seeded random sample of a set's pairs
(in file order). Counting rules (ties, abstains) are those of downstream.metrics.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import pathlib
import time
import zlib
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from gramr2_jax.data import schema, sources
from gramr2_jax.data.errors import FieldError, ReadReport
from gramr2_jax.data.jsonl import read_rows
from gramr2_jax.downstream import metrics

if TYPE_CHECKING:
    from gramr2_jax.judge import Judge


class SpecError(ValueError):
    """A --data spec that is neither a built-in name nor an existing file."""


@dataclasses.dataclass(frozen=True)
class EvalPair:
    prompt: str
    chosen: str
    rejected: str
    subset: str
    section: str | None = None
    style: tuple[int, int] | None = None  # RM-Bench (chosen style, rejected style)
    id: str | None = None


@dataclasses.dataclass(frozen=True)
class EvalSet:
    name: str
    pairs: list[EvalPair]
    reports: list[ReadReport]


@dataclasses.dataclass(frozen=True)
class BuiltinSet:
    reader: str  # a key of data.sources.READERS
    files: tuple[tuple[str, str], ...]  # (subset, path under the shared folder)
    section: str


_LLMBAR = "data/llmbar/LLMBar"
_PROCESSED = "data/llmbar/Processed"
# Subset names follow RewardBench where it uses the same data (the LLMBar subsets make up its
# chat-hard section); the other sections group our real sets the same way.
BUILTIN_SETS: dict[str, BuiltinSet] = {
    "llmbar_natural": BuiltinSet(
        "llmbar", (("llmbar-natural", f"{_LLMBAR}/Natural/dataset.json"),), "chat-hard"),
    "llmbar_adversarial": BuiltinSet("llmbar", (
        ("llmbar-adver-GPTInst", f"{_LLMBAR}/Adversarial/GPTInst/dataset.json"),
        ("llmbar-adver-GPTOut", f"{_LLMBAR}/Adversarial/GPTOut/dataset.json"),
        ("llmbar-adver-manual", f"{_LLMBAR}/Adversarial/Manual/dataset.json"),
        ("llmbar-adver-neighbor", f"{_LLMBAR}/Adversarial/Neighbor/dataset.json")), "chat-hard"),
    "mtbench_human": BuiltinSet(
        "llmbar", (("mtbench-human", f"{_PROCESSED}/MT-Bench/dataset.json"),), "human-agreement"),
    "faireval": BuiltinSet(
        "llmbar", (("faireval", f"{_PROCESSED}/FairEval/dataset.json"),), "human-agreement"),
    "llmeval2": BuiltinSet(
        "llmbar", (("llmeval2", f"{_PROCESSED}/LLMEval2/dataset.json"),), "human-agreement"),
    "pandalm": BuiltinSet(
        "pandalm", (("pandalm", "data/pandalm_testset/testset-v1.json"),), "human-agreement"),
    "hh_rlhf_harmless": BuiltinSet(
        "hh_rlhf", (("hh-rlhf-harmless", "data/hh_rlhf_harmless_test/test.jsonl.gz"),), "safety"),
    "gsm8k": BuiltinSet(
        "gsm8k", (("gsm8k", "data/gsm8k/example_model_solutions.jsonl"),), "reasoning"),
}


# ---------------------------------------------------------------------------- reading


def _variants(row: dict, field: str) -> list[str]:
    value = row.get(field)
    if not isinstance(value, list) or len(value) != len(metrics.RMBENCH_STYLES):
        raise FieldError(field, "expected a list of 3 responses "
                         f"({', '.join(metrics.RMBENCH_STYLES)})", "bad_variants")
    return [schema.required_text({f"{field}[{k}]": v}, f"{field}[{k}]")
            for k, v in enumerate(value)]


def _parse_generic(row: Any, default_subset: str) -> list[EvalPair]:
    row = schema.require_object(row)
    subset = schema.optional_text(row, "subset") or default_subset
    section = schema.optional_text(row, "section")
    if "chosen_variants" not in row and "rejected_variants" not in row:
        pair = schema.parse_labelled_pair(row)
        return [EvalPair(pair.prompt, pair.chosen, pair.rejected, subset, section, id=pair.id)]
    for field in ("chosen", "rejected"):
        if field in row:
            raise FieldError(field, "give chosen/rejected or chosen_variants/rejected_variants, "
                             "not both", "ambiguous")
    prompt, row_id = schema.required_text(row, "prompt"), schema.optional_id(row)
    chosen, rejected = _variants(row, "chosen_variants"), _variants(row, "rejected_variants")
    return [EvalPair(prompt, chosen[i], rejected[j], subset, section, (i, j),
                     None if row_id is None else f"{row_id}:{i}{j}")
            for i in range(3) for j in range(3)]


def read_generic(path: str | os.PathLike) -> tuple[list[EvalPair], ReadReport]:
    """A generic labelled JSONL (module docstring), strictly validated."""
    subset = pathlib.Path(path).name.split(".")[0]
    return read_rows(path, lambda value, _: _parse_generic(value, subset), expand=True)


def _read_builtin(name: str, shared_dir: pathlib.Path) -> EvalSet:
    spec = BUILTIN_SETS[name]
    pairs, reports = [], []
    for subset, relative in spec.files:
        path = shared_dir / relative
        if not path.exists():
            raise SpecError(f"--data={name}: {path} not found (set --shared_dir)")
        labelled, report = sources.read_source(spec.reader, path)
        pairs += [EvalPair(p.prompt, p.chosen, p.rejected, subset, spec.section, id=p.id)
                  for p in labelled]
        reports.append(report)
    return EvalSet(name, pairs, reports)


def _rng(seed: int, name: str, purpose: int) -> np.random.Generator:
    # Keyed by the set's name, so a set's draws do not depend on which other sets run.
    return np.random.default_rng([seed, zlib.crc32(name.encode()), purpose])


def load_sets(specs: Sequence[str], *, shared_dir: str | os.PathLike,
              limit: int | None = None, seed: int = 0) -> list[EvalSet]:
    """Reads every spec (a BUILTIN_SETS name, `all`, or a generic JSONL path)."""
    names: list[str] = []
    for spec in specs:
        names += list(BUILTIN_SETS) if spec == "all" else [spec]
    sets = []
    for name in dict.fromkeys(names):  # each set once, in order
        if name in BUILTIN_SETS:
            eval_set = _read_builtin(name, pathlib.Path(shared_dir))
        elif os.path.isfile(name):
            pairs, report = read_generic(name)
            eval_set = EvalSet(name, pairs, [report])
        else:
            raise SpecError(f"--data={name}: neither a file nor a built-in set "
                            f"({', '.join(['all', *BUILTIN_SETS])})")
        if limit is not None and len(eval_set.pairs) > limit:
            keep = np.sort(_rng(seed, name, 0).choice(len(eval_set.pairs), limit, replace=False))
            eval_set = dataclasses.replace(eval_set, pairs=[eval_set.pairs[i] for i in keep])
        sets.append(eval_set)
    return sets


# ---------------------------------------------------------------------------- judging


def _accuracy_dict(acc: metrics.Accuracy) -> dict[str, Any]:
    return {"accuracy": acc.accuracy, "correct": acc.correct, "total": acc.total,
            "abstain_rate": acc.abstain_rate}


def _json_safe(value: Any) -> Any:
    """NaN → None (JSON has no NaN), numpy → Python."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def evaluate(judge: "Judge", sets: Sequence[EvalSet], *, num_samples: int = 1, swap: bool = True,
             greedy: bool | None = None, seed: int = 0, show_progress: bool = True) -> dict:
    """Judges every set; returns the report as JSON-ready dicts (NaN written as None).

    greedy: None = greedy when num_samples == 1 (deterministic single judgments).
    """
    from tqdm import tqdm

    greedy = num_samples == 1 if greedy is None else greedy
    results: list[metrics.PairResult] = []
    firsts, seconds = [], []  # per-order majority verdicts, each in its showing's letters
    per_set, dropped = {}, collections.Counter()
    total_time = 0.0
    for eval_set in sets:
        pairs = eval_set.pairs
        chosen_first = np.zeros(len(pairs), bool)
        chosen_first[:(len(pairs) + 1) // 2] = True
        chosen_first = _rng(seed, eval_set.name, 1).permutation(chosen_first)
        shown = [(p.chosen, p.rejected) if c else (p.rejected, p.chosen)
                 for p, c in zip(pairs, chosen_first)]
        start = time.perf_counter()
        with tqdm(total=len(pairs) * (2 if swap else 1), unit="prompt", desc=eval_set.name,
                  disable=not show_progress) as bar:
            compared = judge.compare([p.prompt for p in pairs], [a for a, _ in shown],
                                     [b for _, b in shown], num_samples=num_samples, swap=swap,
                                     seed=seed, greedy=greedy, progress=bar.update)
        elapsed = time.perf_counter() - start
        total_time += elapsed
        set_results = [metrics.PairResult(p.subset, c.verdict, "A" if at_a else "B", c.p_a,
                                          p.section, p.style)
                       for p, c, at_a in zip(pairs, compared, chosen_first)]
        results += set_results
        for c in compared:
            in_order, in_swapped = c.order_verdicts
            firsts.append(in_order)
            seconds.append({"A": "B", "B": "A"}.get(in_swapped))  # back to the swapped letters
        set_dropped = sum((r.dropped for r in eval_set.reports), collections.Counter())
        dropped += set_dropped
        per_set[eval_set.name] = {
            **_accuracy_dict(metrics.accuracy(set_results)), "pairs": len(pairs),
            "rows_read": sum(r.num_rows for r in eval_set.reports),
            "dropped": dict(set_dropped),
            "seconds": elapsed, "pairs_per_s": len(pairs) / elapsed if elapsed else math.nan}

    sections = metrics.section_scores(results)
    rm = metrics.rm_bench(results)
    calibration = metrics.calibration(results)
    bias = metrics.position_bias(firsts, seconds) if swap else None
    report = {
        "settings": {"num_samples": num_samples, "swap": swap, "greedy": greedy, "seed": seed},
        "sets": per_set,
        "subsets": {name: _accuracy_dict(acc) for name, acc in sorted(sections.subsets.items())},
        "sections": sections.sections,
        "overall": sections.overall,
        "unassigned_subsets": list(sections.unassigned),
        "pooled": _accuracy_dict(metrics.accuracy(results)),
        "rm_bench": None if not rm.domains else {
            "overall": rm.overall,
            "domains": {name: {"matrix": m.matrix, "counts": m.counts, "hard": m.hard,
                               "normal": m.normal, "easy": m.easy, "average": m.average}
                        for name, m in rm.domains.items()}},
        "position_bias": None if bias is None else {
            "rate": bias.rate, "flipped": bias.flipped, "compared": bias.compared,
            "abstained": bias.abstained, "first_slot": bias.first_slot},
        "calibration": {"ece": calibration.ece, "count": calibration.count},
        "dropped": dict(dropped),
        "throughput": {"pairs": len(results), "seconds": total_time,
                       "pairs_per_s": len(results) / total_time if total_time else math.nan},
    }
    return _json_safe(report)


def _pct(value: float | None) -> str:
    return "   n/a" if value is None else f"{100 * value:5.1f}%"


def format_table(report: dict) -> str:
    """A readable summary of an `evaluate` report."""
    lines = [f"{'set':<22}{'pairs':>7}{'acc':>8}{'abstain':>9}{'pairs/s':>9}"]
    for name, row in report["sets"].items():
        rate = row["pairs_per_s"]
        lines.append(f"{pathlib.Path(name).name[:21]:<22}{row['pairs']:>7}"
                     f"{_pct(row['accuracy']):>8}{_pct(row['abstain_rate']):>9}"
                     f"{'n/a' if rate is None else f'{rate:.2f}':>9}")
    lines.append("")
    lines.append(f"{'subset':<26}{'total':>7}{'acc':>8}")
    for name, row in report["subsets"].items():
        lines.append(f"{name[:25]:<26}{row['total']:>7}{_pct(row['accuracy']):>8}")
    lines.append("")
    for name, value in report["sections"].items():
        lines.append(f"section {name:<18}{_pct(value):>15}")
    lines.append(f"{'overall (mean of sections)':<26}{_pct(report['overall']):>15}")
    if report["rm_bench"] is not None:
        for name, domain in report["rm_bench"]["domains"].items():
            lines.append(f"rm-bench {name}: hard {_pct(domain['hard'])} normal "
                         f"{_pct(domain['normal'])} easy {_pct(domain['easy'])}")
    bias = report["position_bias"]
    if bias is not None:
        lines.append(f"position flips {_pct(bias['rate'])} of {bias['compared']} pairs "
                     f"({bias['abstained']} with an abstaining order)")
    ece = report["calibration"]["ece"]
    lines.append(f"abstain {_pct(report['pooled']['abstain_rate'])}, ECE of p(A≻B) "
                 f"{'n/a' if ece is None else f'{ece:.3f}'} over {report['calibration']['count']}"
                 f" pairs, dropped {report['dropped'] or 'none'}")
    throughput = report["throughput"]
    lines.append(f"{throughput['pairs']} pairs in {throughput['seconds']:.1f}s")
    return "\n".join(lines)
