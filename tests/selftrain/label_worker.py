"""Subprocess worker: label a pool with `label.label_pool` as one of N JAX processes.

Every process labels its own shards; after a barrier, process 0 merges all
shards and writes the merged records to --out as JSON.
"""

import argparse
import dataclasses
import json
import os
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--judge_dir", required=True)
    p.add_argument("--pool", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--coordinator", default=None)
    p.add_argument("--num_processes", type=int, default=1)
    p.add_argument("--process_id", type=int, default=0)
    args = p.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

    import jax

    if args.coordinator:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    import pathlib

    from jax.experimental import multihost_utils

    from gramr2_jax.judge import Judge
    from gramr2_jax.selftrain import artifacts, label

    pool = artifacts.read_jsonl(pathlib.Path(args.pool))
    judge = Judge.from_pretrained(args.judge_dir, batch_size=4)
    labels = pathlib.Path(args.labels)
    label.label_pool(judge, pool, labels, num_samples=2, swap=True, temperature=1.0, seed=3,
                     shard_size=3, process_index=jax.process_index(),
                     process_count=jax.process_count())
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("labels written")
    if jax.process_index() == 0:
        records = label.read_labels(labels, len(pool), shard_size=3)
        pathlib.Path(args.out).write_text(json.dumps([dataclasses.asdict(r) for r in records]))


if __name__ == "__main__":
    main()
