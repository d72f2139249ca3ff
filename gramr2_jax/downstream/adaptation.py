"""Task adaptation (GRAM-R² §(d)): fine-tune the foundation judge on a few labels of a new task.

The foundation judge is the self-training pipeline's final judge, trained on every
category EXCEPT `adaptation.held_out`. Both arms are then fine-tuned the same way
(stages.train_judge, same steps per epoch and learning rate) on the first N of one
nested pool of held-out-category pairs with rule rationales, for each N in
`adaptation.sizes`:

  foundation  starts from the foundation judge
  base        starts from the stage-0 base LM of the same run (paper: "G-Vanilla")

and every model is evaluated on a disjoint held-out test set of that category
(selftrain.evaluation.evaluate_judge). The foundation judge without fine-tuning is
the N = 0 point. Workdir layout (every piece resumable through its DONE marker):

  pipeline/                      the selftrain pipeline run (categories without held_out)
  adapt_data/                    pool.jsonl (nested fine-tune sets), test.jsonl
  zero_shot/                     metrics.json of the foundation judge at N = 0
  <arm>_n<N>/                    train/ (checkpoints + export), metrics.json
  adaptation.json, adaptation.md, adaptation.png
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any, Callable

import ml_collections

from gramr2_jax import synthetic
from gramr2_jax.selftrain import artifacts, evaluation, pipeline, stage0, stages

log = logging.getLogger(__name__)

ARMS = ("foundation", "base")


def pipeline_models(config: ml_collections.ConfigDict, pipeline_dir: pathlib.Path
                    ) -> tuple[pathlib.Path, pathlib.Path, Any]:
    """(final judge dir, stage-0 base LM dir, tokenizer) of a finished pipeline run."""
    pipeline.run(config, pipeline_dir)  # resumes; a finished run only reads its markers
    tokenizer = stage0.ensure_tokenizer(config, pipeline_dir)
    base_dir = stages.pretrain_base(config, pipeline_dir, tokenizer)
    rounds = config.selftrain.num_rounds
    last = pipeline_dir / (f"round_{rounds}" if rounds else "stage1")
    judge_dir = pathlib.Path(artifacts.read_json(last / "metrics.json")["model_dir"])
    return judge_dir, base_dir, tokenizer


def make_adaptation_data(config: ml_collections.ConfigDict, out: pathlib.Path
                         ) -> tuple[list[dict], list[dict]]:
    """(pool, test): the pool's first N rows are the size-N fine-tune set (nested sets).

    Difficulties alternate along the pool, so every prefix mixes them evenly.
    """
    if not artifacts.is_done(out):
        ad, seed = config.adaptation, config.data.seed
        difficulties = list(config.data.train_difficulties)
        per_pool = -(-max(ad.sizes) // len(difficulties))
        per_test = ad.num_test // len(difficulties)
        sizes = {f"adapt_pool@{d}": (per_pool, d) for d in difficulties}
        sizes.update({f"adapt_test@{d}": (per_test, d) for d in difficulties})
        parts = synthetic.make_splits(sizes, [ad.held_out], seed=f"adaptation:{seed}")
        pool_parts = [synthetic.seed_examples(parts[f"adapt_pool@{d}"], seed) for d in difficulties]
        pool = [row for group in zip(*pool_parts) for row in group]
        test = synthetic.to_unlabelled(
            [p for d in difficulties for p in parts[f"adapt_test@{d}"]], seed)
        artifacts.write_jsonl(out / "pool.jsonl", pool)
        artifacts.write_jsonl(out / "test.jsonl", test)
        artifacts.mark_done(out, {"pool": len(pool), "test": len(test)})
    return artifacts.read_jsonl(out / "pool.jsonl"), artifacts.read_jsonl(out / "test.jsonl")


def _evaluated(stage_dir: pathlib.Path, model_dir: Callable[[], pathlib.Path],
               make_judge: Callable[[pathlib.Path], Any], test: list[dict],
               info: dict[str, Any]) -> dict[str, Any]:
    """A stage's metrics: read when DONE, else train (model_dir()) + evaluate + mark DONE."""
    if artifacts.is_done(stage_dir):
        return artifacts.read_json(stage_dir / "metrics.json")
    directory = model_dir()
    metrics = {**info, "model_dir": str(directory),
               **evaluation.evaluate_judge(make_judge(directory), test)}
    metrics = artifacts.write_json(stage_dir / "metrics.json", metrics)
    artifacts.mark_done(stage_dir)
    return metrics


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict[str, Any]:
    """Runs (or resumes) the adaptation experiment; returns what adaptation.json holds."""
    from gramr2_jax.judge import Judge

    ad = config.adaptation
    if ad.held_out in config.data.categories:
        raise ValueError(f"adaptation.held_out: {ad.held_out!r} must not be in data.categories "
                         f"{list(config.data.categories)} (the foundation judge must not see it)")
    workdir = pathlib.Path(workdir)
    foundation_dir, base_dir, tokenizer = pipeline_models(config, workdir / "pipeline")
    pool, test = make_adaptation_data(config, workdir / "adapt_data")

    def make_judge(model_dir: pathlib.Path) -> Judge:
        return Judge.from_pretrained(model_dir, batch_size=config.judge.batch_size)

    zero_shot = _evaluated(workdir / "zero_shot", lambda: foundation_dir, make_judge, test,
                           {"arm": "foundation", "n": 0})
    starts = {"foundation": foundation_dir, "base": base_dir}
    results: dict[str, dict[int, dict[str, Any]]] = {arm: {} for arm in ARMS}
    for n in sorted(ad.sizes):
        for arm in ARMS:
            stage_dir = workdir / f"{arm}_n{n}"
            train = lambda arm=arm, n=n, stage_dir=stage_dir: stages.train_judge(  # noqa: E731
                config, ad, starts[arm], pool[:n], stage_dir / "train", tokenizer)
            results[arm][n] = _evaluated(stage_dir, train, make_judge, test, {"arm": arm, "n": n})
            log.info("adaptation %s N=%d: accuracy %.3f", arm, n, results[arm][n]["accuracy"])
    summary = {"held_out": ad.held_out, "sizes": sorted(ad.sizes), "num_test": len(test),
               "foundation_categories": list(config.data.categories),
               "zero_shot": zero_shot,
               "arms": {arm: {str(n): m for n, m in per.items()} for arm, per in results.items()}}
    summary = artifacts.write_json(workdir / "adaptation.json", summary)
    write_report(workdir, summary)
    return summary


def curve(summary: dict[str, Any], arm: str, key: str = "accuracy") -> list[tuple[int, float]]:
    """(N, metric) points of one arm, N ascending."""
    return [(n, summary["arms"][arm][str(n)][key]) for n in summary["sizes"]]


def plot(summary: dict[str, Any], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for arm, label in (("foundation", "from foundation judge"), ("base", "from stage-0 base LM")):
        ax.plot(*zip(*curve(summary, arm)), marker="o", label=label)
    ax.axhline(summary["zero_shot"]["accuracy"], ls="--", c="gray",
               label="foundation judge, no fine-tune")
    ax.set_xscale("log", base=2)
    ax.set_xticks(summary["sizes"], [str(n) for n in summary["sizes"]])
    ax.set_xlabel(f"labelled {summary['held_out']} pairs (N)")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(workdir: pathlib.Path, summary: dict[str, Any]) -> None:
    plot(summary, workdir / "adaptation.png")
    keys = ("accuracy", "abstain_rate", "position_bias", "faithfulness")
    lines = [
        f"# Task adaptation to held-out category `{summary['held_out']}`", "",
        f"Foundation judge: self-training pipeline on {summary['foundation_categories']}. "
        f"Both arms get the same fine-tune on the first N labelled pairs (rule rationales); "
        f"test: {summary['num_test']} held-out pairs, greedy, both orders (abstain = wrong).", "",
        "| N | foundation acc | base acc | Δ | foundation abstain | base abstain | "
        "foundation faithful | base faithful |", "|---|---|---|---|---|---|---|---|",
    ]
    zs = summary["zero_shot"]
    lines.append(f"| 0 | {zs['accuracy']:.3f} | – | – | {zs['abstain_rate']:.3f} | – | "
                 f"{zs['faithfulness']:.3f} | – |")
    for n in summary["sizes"]:
        f, b = (summary["arms"][arm][str(n)] for arm in ARMS)
        lines.append(f"| {n} | {f['accuracy']:.3f} | {b['accuracy']:.3f} | "
                     f"{f['accuracy'] - b['accuracy']:+.3f} | {f['abstain_rate']:.3f} | "
                     f"{b['abstain_rate']:.3f} | {f['faithfulness']:.3f} | "
                     f"{b['faithfulness']:.3f} |")
    lines += ["", f"Metrics per point: {', '.join(keys)} (adaptation.json has all of them).",
              "", "![adaptation curve](adaptation.png)"]
    artifacts.atomic_write_text(workdir / "adaptation.md", "\n".join(lines) + "\n")
