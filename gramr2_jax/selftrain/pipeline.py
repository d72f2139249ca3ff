"""The GRAM-R² pipeline over one workdir: stage 0, seed SFT, self-training rounds, report.

Every stage writes its artifacts under the workdir and marks itself done, so
rerunning the same command resumes after the last finished piece:

  data/             synthetic splits (seed, unlabelled pool, test_id, test_ood, pretrain text)
  stage0/           tokenizer, base LM (train/ → export/)
  stage1/           seed SFT judge (train/ → export/), metrics.json        (= round 0)
  round_r/          labels/, kept.jsonl, train/, metrics.json               (r = 1..R)
  baselines/<name>/ the same-data baselines requested in config.baselines
  final_metrics.json, report.md, *.png
  config.json       the config of the run's first start (config.<n>.json: a later start's
                    config that differed; the differences are logged)

With config.stage_cache set, data/, stage0/ and stage1/ are taken from (and
added to) a cache shared by runs that agree on them (stage_cache.py).
"""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any

import ml_collections

from gramr2_jax.selftrain import artifacts, baselines, report, rounds, stage0, stage_cache, stages

log = logging.getLogger(__name__)


def judge_factory(config: ml_collections.ConfigDict):
    from gramr2_jax import sharding
    from gramr2_jax.judge import Judge

    def make(model_dir: pathlib.Path):
        # This host's devices only: each host labels its own shards of the pool.
        return Judge.from_pretrained(model_dir, batch_size=config.judge.batch_size,
                                     temperature=config.selftrain.temperature,
                                     mesh=sharding.local_mesh())
    return make


def record_config(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> list[str]:
    """Writes <workdir>/config.json on the first start. A later start with another config
    (more rounds, say) goes on, since finished stages stay as they are, but its config is
    kept as config.<n>.json and the changed fields are logged. Returns them."""
    now = json.loads(config.to_json_best_effort(sort_keys=True))
    first_path = workdir / "config.json"
    if not first_path.exists():
        artifacts.write_json(first_path, now)
        return []
    changed = config_changes(artifacts.read_json(first_path), now)
    if changed:
        earlier = [artifacts.read_json(p) for p in workdir.glob("config.*.json")]
        if now not in earlier:
            artifacts.write_json(workdir / f"config.{len(earlier) + 2}.json", now)
        log.warning("%s was started with another config; changed: %s. Finished stages are "
                    "kept as they were made (see config.json)", workdir, ", ".join(changed))
    return changed


def config_changes(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two config dicts."""
    out = []
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key), after.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict[str, Any]:
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    record_config(config, workdir)
    data_dir = _cached(config, workdir, "data", lambda: stage0.make_data(config, workdir))

    def base_model():
        tokenizer = stage0.ensure_tokenizer(config, workdir)
        return tokenizer, stages.pretrain_base(config, workdir, tokenizer)

    tokenizer, base_dir = _cached(config, workdir, "stage0", base_model)
    log.info("stage 0 base LM: %s", base_dir)

    seed_rows = artifacts.read_jsonl(data_dir / "seed.jsonl")
    pool = artifacts.read_jsonl(data_dir / "unlabelled.jsonl")
    tests = {name: artifacts.read_jsonl(data_dir / f"{name}.jsonl") for name in ("test_id", "test_ood")}
    make_judge = judge_factory(config)

    history = [_cached(config, workdir, "stage1", lambda: seed_stage(
        config, workdir, base_dir, seed_rows, tokenizer, make_judge, tests))]
    judge_dir = seed_judge_dir = pathlib.Path(history[0]["model_dir"])
    kept: list[dict] = []
    for r in range(1, config.selftrain.num_rounds + 1):
        metrics = rounds.run_round(config, workdir, r, tokenizer=tokenizer, base_dir=base_dir,
                                   judge_dir=judge_dir, seed_judge_dir=seed_judge_dir,
                                   seed_rows=seed_rows, pool=pool,
                                   earlier_kept=kept, make_judge=make_judge, tests=tests,
                                   previous=history[-1])
        history.append(metrics)
        judge_dir = pathlib.Path(metrics["model_dir"])
        kept += artifacts.read_jsonl(workdir / f"round_{r}" / "kept.jsonl")
        log.info("round %d: test_id accuracy %.3f", r, metrics["test_id/accuracy"])

    extra = baselines.run_all(config, workdir, base_dir, seed_rows, tokenizer, tests)
    final = {k: v for k, v in history[-1].items() if isinstance(v, (int, float))}
    final["seed_only/test_id/accuracy"] = history[0]["test_id/accuracy"]
    final["seed_only/test_ood/accuracy"] = history[0]["test_ood/accuracy"]
    for name, metrics in extra.items():
        final.update({f"{name}/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
    larger = _larger_test(config, workdir)
    for judge, sets in larger.items():
        final.update({f"larger_test/{judge}/{key}/{k}": v for key, metrics in sets.items()
                      for k, v in metrics.items() if k in _LARGER_TEST_METRICS})
    artifacts.write_json(workdir / "final_metrics.json", final)
    report.write_report(workdir, history, extra, config, larger)
    return final


# of each judge; "difference" (final minus seed-only, paired over the pairs) has delta, ci95
_LARGER_TEST_METRICS = ("accuracy", "position_bias", "faithfulness", "num_pairs", "delta", "ci95")


def _larger_test(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, Any]:
    """The seed-only and the final judge on fresh pairs per difficulty (extra_eval.py), as
    a check with a smaller standard error than the per-round test sets', and "difference":
    the final judge's accuracy minus the seed-only judge's with a paired 95 % interval."""
    n = config.get("larger_test", {}).get("num_per_difficulty", 0)
    if not n or config.data.source != "synthetic" or config.selftrain.num_rounds < 1:
        return {}
    from gramr2_jax.selftrain import extra_eval

    judges = extra_eval.evaluate_run(workdir, ["stage1", "last"], n,
                                     extra_eval.run_difficulties(config))
    return {**judges, "difference": extra_eval.paired_difference(workdir, "stage1", "last", n)}


def _cached(config, workdir: pathlib.Path, stage: str, build):
    """build() for a stage, first restoring it from config.stage_cache (stage_cache.py)."""
    stage_cache.restore(config, workdir, stage)
    out = build()
    stage_cache.publish(config, workdir, stage)
    return out


def seed_stage(config, workdir, base_dir, seed_rows, tokenizer, make_judge, tests) -> dict[str, Any]:
    """Stage 1: SFT on the labelled seed set with rationales (round 0 of the history)."""
    out = workdir / "stage1"
    if artifacts.is_done(out):
        metrics = artifacts.read_json(out / "metrics.json")
    else:
        model_dir = stages.train_judge(config, config.stage1, base_dir, seed_rows, out / "train",
                                       tokenizer)
        metrics = {"round": 0, "model_dir": str(model_dir), "num_train_rows": len(seed_rows),
                   **rounds.evaluate_all(make_judge(model_dir), tests,
                                         config.data.source == "synthetic")}
        metrics = artifacts.write_json(out / "metrics.json", metrics)  # as a resumed run reads it
        artifacts.mark_done(out)
    # model_dir: this workdir's copy, also for a stage restored from the stage cache.
    return dict(metrics, model_dir=str(out / "train" / "export"))
