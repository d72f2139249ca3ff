"""<workdir>/report.md and PNG plots of a pipeline run (accuracy, yield, precision by round)."""

from __future__ import annotations

import math
import pathlib
from typing import Any

from gramr2_jax.selftrain import artifacts


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3f}"
    return "–" if value is None else str(value)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return lines


def plot(history: list[dict[str, Any]], out_dir: pathlib.Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [h["round"] for h in history]
    files = []
    panels = {
        "accuracy.png": ("held-out accuracy", ["test_id/accuracy", "test_ood/accuracy"]),
        "labels.png": ("pseudo-labels", ["label/yield", "label/precision"]),
    }
    for name, (title, keys) in panels.items():
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for key in keys:
            points = [(r, h[key]) for r, h in zip(rounds, history)
                      if isinstance(h.get(key), (int, float)) and math.isfinite(h[key])]
            if points:
                ax.plot(*zip(*points), marker="o", label=key)
        ax.set_xlabel("round (0 = seed SFT)")
        ax.set_title(title)
        ax.set_ylim(0, 1.02)
        ax.set_xticks(rounds)
        ax.grid(alpha=0.3)
        if ax.get_lines():  # a panel can be empty (e.g. no round kept a pair)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        files.append(name)
    return files


def _final_judge_dir(workdir: pathlib.Path, history: list[dict[str, Any]]) -> str:
    """The last round's judge (a round that kept no pair carries the one before it), as a
    path relative to the workdir when it lies inside it."""
    model_dir = pathlib.Path(history[-1]["model_dir"])
    try:
        return str(model_dir.relative_to(workdir))
    except ValueError:
        return str(model_dir)


def write_report(workdir: pathlib.Path, history: list[dict[str, Any]],
                 baselines: dict[str, dict[str, Any]], config,
                 larger_test: dict[str, dict[str, dict[str, Any]]] | None = None) -> None:
    categories = sorted({k.split("/")[-1] for h in history for k in h
                         if k.startswith("test_id/accuracy/")})
    lines = [
        "# GRAM-R² self-training report", "",
        f"Workdir `{workdir}`; seed {config.seed}; {config.selftrain.num_rounds} rounds; "
        f"k = {config.selftrain.num_samples} samples per order; rationale source "
        f"`{config.selftrain.rationale_source}`; filters "
        f"{'on' if config.selftrain.filters_enabled else 'off'}; curriculum "
        f"{'on' if config.selftrain.curriculum_enabled else 'off'}"
        f"{'; label only' if config.selftrain.label_only else ''}.", "",
        "Round 0 is the seed-only judge (stage 1). Accuracy counts abstains as wrong. "
        "Pseudo-label precision is measured against the pool's gold labels, which nothing "
        "in training or filtering reads.", "",
        f"The final judge (an HF directory: `Judge.from_pretrained`, `python -m "
        f"gramr2_jax.judge --model=...`): `{_final_judge_dir(workdir, history)}`.", "",
        "## Held-out accuracy by round", "",
    ]
    cols = ["round", "test_id/accuracy", "test_ood/accuracy", "test_id/abstain_rate",
            "test_id/position_bias", "test_id/faithfulness", "num_train_rows"]
    lines += _table(history, cols)
    lines += ["", "## In-distribution accuracy per category", ""]
    lines += _table(history, ["round"] + [f"test_id/accuracy/{c}" for c in categories])
    lines += ["", "## Out-of-distribution (harder) accuracy per category", ""]
    lines += _table(history, ["round"] + [f"test_ood/accuracy/{c}" for c in categories])
    lines += ["", "## Pseudo-labels", ""]
    lines += _table(history[1:], ["round", "label/kept", "label/yield", "label/precision",
                                  "label/abstain_rate", "label/position_bias"])
    carried = [str(h["round"]) for h in history[1:] if h.get("retrained") is False]
    if carried:
        lines += ["", f"Round(s) {', '.join(carried)} kept no pair and did not retrain: the "
                  "previous round's judge and metrics carry forward."]
    if baselines:
        lines += ["", "## Same-data baselines (trained on the seed set only)", ""]
        lines += _table([{"baseline": k, **v} for k, v in baselines.items()],
                        ["baseline", "test_id/accuracy", "test_ood/accuracy"])
    if larger_test:
        lines += ["", "## Larger held-out test: seed-only vs final judge", "",
                  "Fresh pairs of each difficulty, none in the run's data "
                  "(`python -m gramr2_jax.selftrain.extra_eval`); a used-up category gives "
                  "fewer pairs.", ""]
        seed_only, final = larger_test["stage1"], larger_test["last"]
        paired = larger_test.get("difference", {})
        rows = [{"test": key, "pairs": seed_only[key]["num_pairs"],
                 "seed-only accuracy": seed_only[key]["accuracy"],
                 "final accuracy": final[key]["accuracy"],
                 "Δ": f'{final[key]["accuracy"] - seed_only[key]["accuracy"]:+.3f}',
                 "95 % interval of Δ": (f'± {paired[key]["ci95"]:.3f}' if key in paired
                                         else "–")}
                for key in seed_only]
        lines += _table(rows, ["test", "pairs", "seed-only accuracy", "final accuracy", "Δ",
                               "95 % interval of Δ"])
        lines += ["", "The interval is over the test's pairs (paired: the two judges on the "
                  "same pairs). It says how much a fresh draw of pairs would move Δ, not "
                  "where another seed's run would land; a seed moves the judges more "
                  "(README, \"Measured results\")."]
    files = plot(history, workdir)
    lines += [""] + [f"![{f}]({f})" for f in files]
    artifacts.atomic_write_text(workdir / "report.md", "\n".join(lines) + "\n")
