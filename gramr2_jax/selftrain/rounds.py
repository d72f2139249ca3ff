"""Stage 2: self-training rounds r = 1..R (label → filter → rationale → merge → retrain → eval).

Round r's artifacts live in <workdir>/round_r/: labels/ (atomic shards),
kept.jsonl (pseudo-labelled training rows), train/ (checkpoints + export),
metrics.json and DONE. Gold labels of the pool are read only in `_report_labels`,
for reporting; nothing that trains or filters sees them.

A round whose filters keep no pair does not retrain (it has nothing new to learn
from): the previous judge, and its held-out metrics (greedy, so they would be
the same), carry forward.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np

from gramr2_jax.data import judge_format
from gramr2_jax.data.prompts import swap_response_names
from gramr2_jax.selftrain import artifacts, curriculum, evaluation, filters, label, prover, stages

log = logging.getLogger(__name__)


def round_thresholds(st: ml_collections.ConfigDict, r: int) -> curriculum.FilterThresholds:
    """The round's thresholds, after the no_filter / no_curriculum ablation switches."""
    cur = st.curriculum.to_dict()
    cur["num_rounds"] = st.num_rounds
    if not st.curriculum_enabled:  # every round uses the loosest (last round's) thresholds
        r = st.num_rounds
    thresholds = curriculum.thresholds_for_round(cur, r)
    if not st.filters_enabled:
        thresholds = dataclasses.replace(thresholds, kappa=None, tau=None, tau_quantile=None,
                                         sigma=None, swap_agreement=False, rationale_rules=False,
                                         coherence=False)
    return thresholds


def coherence_checker(config: ml_collections.ConfigDict, pool_by_id: dict[str, dict]):
    """The rationale coherence rule for the pool's pairs (synthetic domain only), or None."""
    if config.data.source != "synthetic":
        return None
    from gramr2_jax.synthetic.rationale import check_coherence

    return lambda pair_id, rationale, verdict: check_coherence(
        pool_by_id[pair_id]["prompt"], rationale, verdict)


def round_pool(pool: list[dict[str, Any]], st: ml_collections.ConfigDict, r: int) -> list[dict]:
    """The pairs labelled in round r: a fresh slice per round, or the whole pool each round."""
    if st.pool_per_round == "all":
        return pool
    size = len(pool) // st.num_rounds
    return pool[(r - 1) * size: r * size]


def kept_rows(results, pool_by_id: dict[str, dict], label_only: bool) -> list[dict[str, Any]]:
    """Training rows for kept pairs: pseudo-label + the chosen sample's rationale (original frame)."""
    rows = []
    for res in results:
        if not res.keep:
            continue
        pair = pool_by_id[res.pair_id]
        rationale = ""
        if not label_only:
            rationale = judge_format.parse_judgment(res.rationale_text).rationale or ""
            if res.rationale_order == "swapped":  # it names the responses as the model saw them
                rationale = swap_response_names(rationale)
        rows.append({"id": pair["id"], "category": pair["category"], "prompt": pair["prompt"],
                     "response_a": pair["response_a"], "response_b": pair["response_b"],
                     "verdict": res.label, "rationale": rationale})
    return rows


def _report_labels(records, results, pool_by_id) -> dict[str, float]:
    """Yield, precision against gold, abstain and position-bias rates of the labelling."""
    kept = [r for r in results if r.keep]
    graded = [r for r in kept if pool_by_id[r.pair_id].get("gold") is not None]
    samples = [s for rec in records for s in (*rec.original, *rec.swapped)]
    majorities = [(filters.majority_label(rec.original), filters.majority_label(rec.swapped))
                  for rec in records if rec.swapped]
    flips = [a != b for a, b in majorities if a is not None and b is not None]
    return {
        "label/yield": len(kept) / max(len(results), 1),
        "label/precision": (float(np.mean([pool_by_id[r.pair_id]["gold"] == r.label for r in graded]))
                            if graded else float("nan")),
        "label/abstain_rate": float(np.mean([s.verdict is None for s in samples])) if samples else 0.0,
        "label/position_bias": float(np.mean(flips)) if flips else float("nan"),
        "label/kept": float(len(kept)),
    }


@dataclasses.dataclass(frozen=True)
class Selection:
    """What the filters (and the prover) make of a round's recorded labels."""

    kept: list[dict[str, Any]]  # training rows: pseudo-label + rationale, original frame
    results: list[filters.FilterResult]
    stats: filters.FilterStats
    unproved: int  # kept by the filters, dropped for want of a (coherent) proof
    thresholds: curriculum.FilterThresholds


def select(config: ml_collections.ConfigDict, r: int, records, pool_by_id: dict[str, dict],
           train_prover) -> Selection:
    """Round r's filters over its recorded labels, then proofs when the rationale source
    is the prover (train_prover() gives the prover's model dir; called only then)."""
    st = config.selftrain
    thresholds = round_thresholds(st, r)
    coherence = coherence_checker(config, pool_by_id)
    if thresholds.checks_coherence and coherence is None:
        raise ValueError("selftrain.curriculum: coherence needs data.source 'synthetic' (its "
                         "checker reads the synthetic domain's rationale claims)")
    results, stats = filters.filter_pairs(records, thresholds, coherence)
    kept = kept_rows(results, pool_by_id, st.label_only)
    unproved = 0
    if st.rationale_source == "prover" and not st.label_only and kept:
        kept, unproved = prover.prove(
            config, train_prover(), kept, num_candidates=st.num_proofs,
            seed=config.seed * 1000 + r,
            coherence=coherence if thresholds.checks_coherence else None)
    return Selection(kept, results, stats, unproved, thresholds)


def retrain(config: ml_collections.ConfigDict, round_rows: list[dict], *, seed_rows: list[dict],
            earlier_kept: list[dict], base_dir: pathlib.Path, judge_dir: pathlib.Path,
            seed_judge_dir: pathlib.Path, out_dir: pathlib.Path,
            tokenizer) -> tuple[pathlib.Path, int]:
    """A round's training as selftrain says: seed rows + earlier rounds' rows (merge
    "cumulative") + this round's, from the base LM, the seed judge or the previous judge
    (retrain_from). Returns (exported model dir, training rows)."""
    st = config.selftrain
    rows = seed_rows + (earlier_kept if st.merge == "cumulative" else []) + round_rows
    start = start_dir(st, base_dir, judge_dir, seed_judge_dir)
    return stages.train_judge(config, st, start, rows, out_dir, tokenizer), len(rows)


def start_dir(st: ml_collections.ConfigDict, base_dir: pathlib.Path, judge_dir: pathlib.Path,
              seed_judge_dir: pathlib.Path) -> pathlib.Path:
    """Where a round's training starts: the stage-0 base LM ("base"), the stage-1 seed
    judge ("seed") or the previous round's judge ("previous")."""
    return {"base": base_dir, "seed": seed_judge_dir, "previous": judge_dir}[st.retrain_from]


def run_round(config: ml_collections.ConfigDict, workdir: pathlib.Path, r: int, *, tokenizer,
              base_dir: pathlib.Path, judge_dir: pathlib.Path, seed_judge_dir: pathlib.Path,
              seed_rows: list[dict],
              pool: list[dict], earlier_kept: list[dict], make_judge, tests,
              previous: dict[str, Any]) -> dict[str, Any]:
    """Runs (or resumes) round r; returns its metrics (with its model dir).

    previous: the last round's metrics (stage 1's for r = 1), carried forward when
    this round keeps no pair."""
    st = config.selftrain
    round_dir = workdir / f"round_{r}"
    if artifacts.is_done(round_dir):
        return artifacts.read_json(round_dir / "metrics.json")
    pairs = round_pool(pool, st, r)
    pool_by_id = {p["id"]: p for p in pairs}
    labels_dir = round_dir / "labels"
    judge = make_judge(judge_dir)
    label.label_pool(judge, pairs, labels_dir, num_samples=st.num_samples, swap=st.swap,
                     temperature=st.temperature, seed=config.seed * 1000 + r,
                     shard_size=st.shard_size, process_index=jax.process_index(),
                     process_count=jax.process_count())
    if jax.process_count() > 1:  # every host's shards are written before anyone merges
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"round {r} labels")
    records = label.read_labels(labels_dir, len(pairs), st.shard_size)
    chosen = select(config, r, records, pool_by_id, lambda: prover.train_prover(
        config, base_dir, seed_rows, workdir / "prover" / "train", tokenizer))
    kept, stats = chosen.kept, chosen.stats
    artifacts.write_jsonl(round_dir / "kept.jsonl", kept)
    log.info("round %d: kept %d/%d pairs (drops: %s; no proof: %d)", r, len(kept), stats.total,
             stats.drops_by_reason, chosen.unproved)

    metrics = {"round": r, "retrained": bool(kept),
               "thresholds": dataclasses.asdict(chosen.thresholds), "tau_applied": stats.tau,
               "drops": stats.drops_by_reason, "label/unproved": chosen.unproved,
               **_report_labels(records, chosen.results, pool_by_id)}
    if kept:
        model_dir, num_rows = retrain(config, kept, seed_rows=seed_rows, earlier_kept=earlier_kept,
                                      base_dir=base_dir, judge_dir=judge_dir,
                                      seed_judge_dir=seed_judge_dir,
                                      out_dir=round_dir / "train", tokenizer=tokenizer)
        metrics.update(model_dir=str(model_dir), num_train_rows=num_rows, **evaluate_all(
            make_judge(model_dir), tests, config.data.source == "synthetic"))
    else:
        log.warning("round %d kept no pair: no retraining, round %d's judge carries forward",
                    r, r - 1)
        metrics.update(model_dir=str(judge_dir), num_train_rows=previous["num_train_rows"],
                       **{k: v for k, v in previous.items() if k.startswith("test_")})
    metrics = artifacts.write_json(round_dir / "metrics.json", metrics)
    artifacts.mark_done(round_dir)
    return metrics


def evaluate_all(judge, tests: dict[str, list[dict]], synthetic_data: bool) -> dict[str, float]:
    out = {}
    for name, rows in tests.items():
        metrics = evaluation.evaluate_judge(judge, rows, check_faithfulness=synthetic_data)
        out.update({f"{name}/{k}": v for k, v in metrics.items()})
    return out
