r"""Retrains one round of a finished synthetic run with one thing changed, and judges it.

    python -m gramr2_jax.selftrain.round_study --config=configs/demo.py:seed=0 \
        --workdir=RUN --round=1 --out=DIR [--train_on=kept] [--labels=pseudo] \
        [--rationales=recorded] [--refilter] [--larger_test=800] [--config.x=y ...]

A counterfactual of round r: the same start judge (or the base LM, per
selftrain.retrain_from), the same earlier rounds' rows (selftrain.merge), and round
r's pairs changed as asked:
  --train_on      kept          the pairs round r kept (its kept.jsonl)
                  kept_correct  only those whose pseudo-label equals the gold label
                  slice         every pair round r labelled (needs --labels=gold)
                  none          no pair of round r: the same training on the rest (control)
  --labels        pseudo (the round's verdicts) or gold (the pool's gold labels: an oracle)
  --rationales    recorded (the round's), rule (synthetic.write_rationale, which argues
                  the gold label: needs --labels=gold) or none (empty <think>)
  --refilter      choose round r's pairs again from its recorded labels with the filters
                  (and prover) of --config instead of reading kept.jsonl; the config's
                  other fields (lr, epochs, swap_augment, ...) change the training too.
The config must be the run's, with any change on top as --config.x=y flags; where the run
recorded its config.json, a change to what fixed the run's rounds (data, models, the
judge template, the split of the pool into rounds) is an error. The new judge is evaluated on the run's test sets and on the
larger test of selftrain/extra_eval.py (the same fresh pairs), and the training rows'
count, label precision and rationale faithfulness are reported. Everything goes to
--out (metrics.json; rerunning reuses the finished training); the run is only read.
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

from absl import app, flags

TRAIN_ON = ("kept", "kept_correct", "slice", "none")
LABELS = ("pseudo", "gold")
RATIONALES = ("recorded", "rule", "none")


def round_rows(kept: list[dict], pool_slice: list[dict], *, train_on: str, labels: str,
               rationales: str) -> list[dict[str, Any]]:
    """Round r's training rows, changed as asked (see the module docstring)."""
    if train_on not in TRAIN_ON or labels not in LABELS or rationales not in RATIONALES:
        raise ValueError(f"train_on/labels/rationales: got {train_on!r}/{labels!r}/"
                         f"{rationales!r}; choose from {TRAIN_ON}/{LABELS}/{RATIONALES}")
    if rationales == "rule" and labels != "gold":
        raise ValueError("--rationales=rule argues the gold label: it needs --labels=gold")
    if train_on == "slice" and (labels != "gold" or rationales == "recorded"):
        raise ValueError("--train_on=slice has no pseudo-labels or rationales for the pairs "
                         "the round dropped: it needs --labels=gold and --rationales=rule/none")
    from gramr2_jax.synthetic.rationale import write_rationale

    gold = {p["id"]: p["gold"] for p in pool_slice}
    if train_on == "none":
        return []
    if train_on == "slice":
        source = [{k: p[k] for k in ("id", "category", "prompt", "response_a", "response_b")}
                  for p in pool_slice]
    else:
        source = [r for r in kept if train_on == "kept" or r["verdict"] == gold[r["id"]]]
    rows = []
    for row in source:
        row = dict(row)
        if labels == "gold":
            row["verdict"] = gold[row["id"]]
        if rationales == "rule":
            row["rationale"], verdict = write_rationale(row["prompt"], row["response_a"],
                                                        row["response_b"])
            assert verdict == row["verdict"], row["id"]  # the rule finds the gold response
        elif rationales == "none":
            row["rationale"] = ""
        rows.append(row)
    return rows


def row_stats(rows: list[dict], pool_slice: list[dict]) -> dict[str, float]:
    """Count, precision against gold and rationale faithfulness of round rows."""
    from gramr2_jax.synthetic.rationale import check_rationale

    by_id = {p["id"]: p for p in pool_slice}
    if not rows:
        return {"rows": 0.0, "precision": float("nan"), "faithfulness": float("nan")}
    return {
        "rows": float(len(rows)),
        "precision": sum(r["verdict"] == by_id[r["id"]]["gold"] for r in rows) / len(rows),
        "faithfulness": sum(check_rationale(by_id[r["id"]], r["rationale"], r["verdict"]).faithful
                            for r in rows) / len(rows),
    }


# What a study must share with its run: the data, the models, and how the pool was split.
_RUN_FIELDS = ("data.", "model.", "stage0.", "stage1.", "judge.template",
               "selftrain.num_rounds", "selftrain.pool_per_round")


def run(config, workdir: pathlib.Path, r: int, out: pathlib.Path, *, train_on: str = "kept",
        labels: str = "pseudo", rationales: str = "recorded", refilter: bool = False,
        larger_test: int = 800) -> dict[str, Any]:
    from gramr2_jax.selftrain import (
        artifacts,
        extra_eval,
        label,
        pipeline,
        prover,
        rounds,
        stage0,
    )

    st = config.selftrain
    if config.data.source != "synthetic":
        raise ValueError("round_study reads gold labels and rule rationales: it needs "
                         "data.source 'synthetic'")
    if not 1 <= r <= st.num_rounds or not artifacts.is_done(workdir / f"round_{r}"):
        raise ValueError(f"--round: {workdir / f'round_{r}'} is not a finished round of the run")
    if (workdir / "config.json").exists():  # written by runs since 2026-11-27
        given = json.loads(config.to_json_best_effort(sort_keys=True))
        differ = [name for name in pipeline.config_changes(
            artifacts.read_json(workdir / "config.json"), given) if name.startswith(_RUN_FIELDS)]
        if differ:
            raise ValueError(f"--config differs from the run's ({workdir / 'config.json'}) in "
                             f"{', '.join(differ)}: those fix what the run's rounds were; "
                             "pass the run's own config")
    data = workdir / "data"
    seed_rows = artifacts.read_jsonl(data / "seed.jsonl")
    pool_slice = rounds.round_pool(artifacts.read_jsonl(data / "unlabelled.jsonl"), st, r)
    slice_ids = {p["id"] for p in pool_slice}
    recorded = artifacts.read_jsonl(workdir / f"round_{r}" / "kept.jsonl")
    outside = [row["id"] for row in recorded if row["id"] not in slice_ids]
    if outside:
        raise ValueError(f"{workdir / f'round_{r}'}: {len(outside)} kept pairs (e.g. "
                         f"{outside[0]!r}) are not in round {r}'s slice of the pool under this "
                         "config: pass the run's own config")
    tokenizer = stage0.ensure_tokenizer(config, workdir)
    base_dir = workdir / "stage0" / "train" / "export"
    kept = recorded
    if refilter:
        records = label.read_labels(workdir / f"round_{r}" / "labels", len(pool_slice),
                                    st.shard_size)
        prover_dir = workdir / "prover" / "train"
        if not artifacts.is_done(prover_dir):
            prover_dir = out / "prover" / "train"
        kept = rounds.select(config, r, records, {p["id"]: p for p in pool_slice},
                             lambda: prover.train_prover(config, base_dir, seed_rows, prover_dir,
                                                         tokenizer)).kept
    new_rows = round_rows(kept, pool_slice, train_on=train_on, labels=labels,
                          rationales=rationales)
    earlier = [row for i in range(1, r)
               for row in artifacts.read_jsonl(workdir / f"round_{i}" / "kept.jsonl")]
    seed_judge = extra_eval.judge_dir(workdir, "stage1")[1]
    previous_judge = seed_judge if r == 1 else extra_eval.judge_dir(workdir, f"round_{r - 1}")[1]
    model_dir, _ = rounds.retrain(config, new_rows, seed_rows=seed_rows, earlier_kept=earlier,
                                  base_dir=base_dir, judge_dir=previous_judge,
                                  seed_judge_dir=seed_judge,
                                  out_dir=out / "train", tokenizer=tokenizer)
    judge = pipeline.judge_factory(config)(model_dir)
    tests = {name: artifacts.read_jsonl(data / f"{name}.jsonl") for name in ("test_id", "test_ood")}
    if larger_test:
        sets = extra_eval.extra_test_sets(workdir, larger_test, extra_eval.run_difficulties(config))
        tests.update({f"larger_test/{key}": rows for key, rows in sets.items()})
    metrics = {"round": r, "train_on": train_on, "labels": labels, "rationales": rationales,
               "refilter": refilter,
               "start": str(rounds.start_dir(st, base_dir, previous_judge, seed_judge)),
               **{f"round_rows/{k}": v for k, v in row_stats(new_rows, pool_slice).items()},
               **rounds.evaluate_all(judge, tests, True)}
    return artifacts.write_json(out / "metrics.json", metrics)


_CONFIG = None


def _define_flags() -> None:
    """The command line's flags (defined only when run as a script)."""
    global _CONFIG
    from ml_collections import config_flags

    _CONFIG = config_flags.DEFINE_config_file("config", None, "The run's config file.",
                                              lock_config=True)
    flags.DEFINE_string("workdir", None, "A finished run's workdir (only read).", required=True)
    flags.DEFINE_integer("round", 1, "The round to retrain.")
    flags.DEFINE_string("out", None, "Where the new judge and metrics.json go.", required=True)
    flags.DEFINE_enum("train_on", "kept", TRAIN_ON, "Round r's pairs to train on.")
    flags.DEFINE_enum("labels", "pseudo", LABELS, "Pseudo-labels or gold labels.")
    flags.DEFINE_enum("rationales", "recorded", RATIONALES, "Which rationales.")
    flags.DEFINE_bool("refilter", False, "Choose the pairs again with --config's filters.")
    flags.DEFINE_integer("larger_test", 800, "Fresh pairs per difficulty (0 = off).")
    flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import logging

    import jax
    from absl import logging as absl_logging

    from gramr2_jax import config_lib
    from gramr2_jax.data.errors import exit_on_data_error

    absl_logging.set_verbosity(absl_logging.WARNING)  # as main.py: no orbax INFO lines
    logging.getLogger("gramr2_jax").setLevel(logging.INFO)
    jax.config.update("jax_threefry_partitionable", True)  # as main.py: the same training
    args = flags.FLAGS
    config = config_lib.config_flag_value(_CONFIG)
    try:
        config_lib.validate(config)
        with exit_on_data_error():
            metrics = run(config, pathlib.Path(args.workdir), args.round, pathlib.Path(args.out),
                          train_on=args.train_on, labels=args.labels,
                          rationales=args.rationales, refilter=args.refilter,
                          larger_test=args.larger_test)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    from gramr2_jax import config_lib, host_devices, hostmem

    hostmem.configure_process()
    host_devices.configure()
    _define_flags()
    app.run(main, flags_parser=config_lib.parse_flags)
