"""Collects the final metrics of a sweep's runs into one table: results.md and results.json.

Runs that differ only by seed form a group; each metric is reported as mean ± sample standard
deviation (n - 1 in the denominator) over the group's finished runs, with n.
"""

import fnmatch
import json
import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

from etils import epath

if TYPE_CHECKING:
    from launch.sweep import Run

FINAL_METRICS = "final_metrics.json"  # written by gramr2_jax.main at the end of a run
FAILED = "sweep_failed.json"  # written by the sweep when a run exits non-zero


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean, sample std (None below two values) and count."""
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def _numeric(metrics: dict[str, object]) -> dict[str, float]:
    """The finite numbers; NaN, inf and null (a metric a run could not measure) count as
    missing, so the table marks how many runs it averages ([n])."""
    return {name: float(value) for name, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value)}


def _run_row(run: "Run") -> dict[str, object]:
    row: dict[str, object] = {"name": run.name, "overrides": run.overrides,
                              "workdir": str(run.workdir)}
    final, failed = run.workdir / FINAL_METRICS, run.workdir / FAILED
    if final.exists():
        row.update(status="done", final_metrics=_numeric(json.loads(final.read_text())))
    elif failed.exists():
        row.update(status="failed", returncode=json.loads(failed.read_text())["returncode"])
    else:
        row.update(status="not run")
    return row


def collect(runs: Sequence["Run"]) -> dict[str, list[dict[str, object]]]:
    """{"groups": [...], "runs": [...]}; groups keep the sweep order and hold finished runs only."""
    rows = [_run_row(run) for run in runs]
    groups: dict[str, dict[str, object]] = {}
    for row in rows:
        if row["status"] != "done":
            continue
        point = {k: v for k, v in row["overrides"].items() if k != "seed"}
        group = groups.setdefault(json.dumps(point, sort_keys=True, default=str),
                                  {"overrides": point, "runs": [], "seeds": [], "values": {}})
        group["runs"].append(row["name"])
        group["seeds"].append(row["overrides"].get("seed"))
        for name, value in row["final_metrics"].items():
            group["values"].setdefault(name, []).append(value)
    for group in groups.values():
        values = group.pop("values")
        group["n"] = len(group["runs"])
        group["metrics"] = {name: summarize(values[name]) for name in sorted(values)}
    return {"groups": list(groups.values()), "runs": rows}


def _cell(stats: dict[str, float | int | None], group_n: int) -> str:
    text = f"{stats['mean']:.4g}"
    if stats["std"] is not None:
        text += f" ± {stats['std']:.4g}"
    if stats["n"] < group_n:
        text += f" [{stats['n']}]"
    return text


def to_markdown(table: dict[str, list[dict[str, object]]],
                metrics: Sequence[str] | None = None) -> str:
    """The table as markdown; `metrics`: only these columns (fnmatch patterns, in this order)."""
    groups = table["groups"]
    metric_names = sorted({name for group in groups for name in group["metrics"]})
    if metrics:
        metric_names = [name for pattern in metrics
                        for name in metric_names if fnmatch.fnmatchcase(name, pattern)]
    lines = ["# Sweep results", "",
             "| overrides (all but seed) | n | " + " | ".join(metric_names) + " |",
             "|---" * (len(metric_names) + 2) + "|"]
    for group in groups:
        label = ", ".join(f"{k}={v}" for k, v in group["overrides"].items()) or "(defaults)"
        cells = [_cell(group["metrics"][name], group["n"]) if name in group["metrics"] else "–"
                 for name in metric_names]
        lines.append(f"| {label.replace('|', '/')} | {group['n']} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: mean ± sample std (n - 1) over runs that differ only by seed; "
              "[k]: only k of the n runs report that metric."]
    for status, title in (("failed", "Failed runs"), ("not run", "Not run yet")):
        rows = [row for row in table["runs"] if row["status"] == status]
        if rows:
            lines += ["", f"## {title}", ""]
            lines += [f"- {row['name']}" + (f" (exit code {row['returncode']})"
                                            if status == "failed" else "") for row in rows]
    return "\n".join(lines) + "\n"


def _strict_json(value: object) -> object:
    """NaN/inf become null so results.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict_json(v) for v in value]
    return value


def write(table: dict[str, list[dict[str, object]]], workdir: epath.Path,
          metrics: Sequence[str] | None = None) -> None:
    """results.json (every metric) and results.md (the `metrics` columns, default all)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "results.json").write_text(json.dumps(_strict_json(table), indent=2, default=str))
    (workdir / "results.md").write_text(to_markdown(table, metrics))
