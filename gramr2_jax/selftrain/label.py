"""Stage 2, step 1: label the unlabelled pool with k sampled judgments in both orders.

The pool is cut into shards of `shard_size` pairs. Each shard's judgments are
written atomically to `labels/shard_NNNNN.jsonl`, so a killed run redoes at most
the shard in flight and never duplicates or loses a pseudo-label. With several
hosts, host h labels shards h, h + H, h + 2H, ... and every host then reads all
shards in order: the merged set is the same as one host's.

Sampling seeds depend on the round, the shard and the row only, never on which
host labelled the shard or how often the run was restarted.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any, Sequence

from gramr2_jax.selftrain import artifacts
from gramr2_jax.selftrain.filters import PairJudgments, recorded, sample_from_generation


def _shard_path(out_dir: pathlib.Path, index: int) -> pathlib.Path:
    return out_dir / f"shard_{index:05d}.jsonl"


def _sample_row(sample) -> dict[str, Any]:
    return {"text": sample.text, "p_first": recorded(sample.p_first),
            "log_odds_first": recorded(sample.log_odds_first)}


def label_pool(judge, pool: Sequence[dict[str, Any]], out_dir: pathlib.Path, *,
               num_samples: int, swap: bool, temperature: float, seed: int, shard_size: int,
               process_index: int = 0, process_count: int = 1) -> None:
    """Writes this host's missing shards (the rows carry generated texts, p_first and its
    log-odds)."""
    num_shards = math.ceil(len(pool) / shard_size)
    todo = [index for index in range(process_index, num_shards, process_count)
            if not _shard_path(out_dir, index).exists()]

    def columns(index):
        rows = pool[index * shard_size:(index + 1) * shard_size]
        return ([r["prompt"] for r in rows], [r["response_a"] for r in rows],
                [r["response_b"] for r in rows])

    # The shards' shapes compile in the background, each before its shard comes up.
    judge.compile_ahead((columns(index) for index in todo), num_samples=num_samples,
                        swap=swap, temperature=temperature)
    for index in todo:
        path = _shard_path(out_dir, index)
        rows = pool[index * shard_size:(index + 1) * shard_size]
        judged = judge.sample_judgments(*columns(index), num_samples=num_samples, swap=swap,
                                        seed=seed * 1_000_003 + index, temperature=temperature)
        artifacts.write_jsonl(path, (
            {"id": row["id"], "original": [_sample_row(s) for s in pj.original],
             "swapped": [_sample_row(s) for s in pj.swapped]}
            for row, pj in zip(rows, judged)))
        artifacts.fault_point("label_shard")


def read_labels(out_dir: pathlib.Path, num_pairs: int, shard_size: int) -> list[PairJudgments]:
    """All shards, in pool order, as filter inputs (verdicts mapped to the original frame)."""
    records = []
    for index in range(math.ceil(num_pairs / shard_size)):
        path = _shard_path(out_dir, index)
        if not path.exists():
            raise FileNotFoundError(f"{path}: labelling shard missing (did every host finish?)")
        records += artifacts.read_jsonl(path)

    def sample(s, swapped):  # shards written before 2026-11-29 have no log_odds_first
        return sample_from_generation(s["text"], s["p_first"], swapped=swapped,
                                      log_odds_first=s.get("log_odds_first"))

    return [PairJudgments(pair_id=r["id"], original=[sample(s, False) for s in r["original"]],
                          swapped=[sample(s, True) for s in r["swapped"]]) for r in records]
