"""Runs the trainer on the tiny model in its own process (for kill/resume, device-count and
multi-process tests). XLA_FLAGS must be set by the caller before this starts.

Writes <workdir>/result.npz: the final params (flattened paths) and the logged losses.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from gramr2_jax import distributed
from gramr2_jax.training.trainer import train
from tests.training import tiny


class SlowSource:
    """Delegating loader wrapper that sleeps before each batch (gives a kill window)."""

    def __init__(self, loader, delay_s: float):
        self.loader, self.delay_s = loader, delay_s

    def __iter__(self):
        return self

    def __next__(self):
        time.sleep(self.delay_s)
        return next(self.loader)

    def get_state(self):
        return self.loader.get_state()

    def set_state(self, state):
        self.loader.set_state(state)


def run(workdir: str, *, loss: str = "sft", steps: int = 12, batch_size: int = 8,
        mesh: str = "-1,1,1", checkpoint_every: int = 3, delay_s: float = 0.0) -> dict:
    """Trains the tiny model in `workdir`; batch_size is per process."""
    rows = tiny.bt_examples(64) if loss == "bt" else tiny.sft_examples(64)
    encode = tiny.encode_bt if loss == "bt" else tiny.encode_sft
    loader = tiny.make_loader(rows, encode, batch_size=batch_size,
                              process_index=jax.process_index(),
                              process_count=jax.process_count())
    config = dict(loss=loss, num_steps=steps, learning_rate=3e-3, warmup_steps=2,
                  compute_dtype="float32", checkpoint_every=checkpoint_every,
                  verdict_token_ids=tiny.VERDICT_IDS, export=False, progress_bar=False,
                  mesh_shape=tuple(int(s) for s in mesh.split(",")))
    result = train(config, tiny.tiny_model(0), SlowSource(loader, delay_s), workdir)
    flat = {"/".join(map(str, path)): var.value
            for path, var in nnx.to_flat_state(nnx.state(result.model))}
    # Every process joins the gather; process 0 writes.
    params = {k: np.asarray(v) for k, v in
              multihost_utils.process_allgather(flat, tiled=True).items()}
    if jax.process_index() == 0:
        np.savez(f"{workdir}/result.npz", **params)
    return {"step": result.step, "start_step": result.start_step,
            "devices": jax.device_count()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--loss", default="sft")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=8, help="per process")
    parser.add_argument("--mesh", default="-1,1,1")
    parser.add_argument("--checkpoint_every", type=int, default=3)
    parser.add_argument("--delay_s", type=float, default=0.0)
    parser.add_argument("--coordinator", default=None)
    parser.add_argument("--num_processes", type=int, default=1)
    parser.add_argument("--process_id", type=int, default=0)
    args = parser.parse_args()

    # Before anything touches a JAX backend.
    distributed.initialize(args.num_processes > 1, args.coordinator, args.num_processes,
                           args.process_id)
    summary = run(args.workdir, loss=args.loss, steps=args.steps, batch_size=args.batch_size,
                  mesh=args.mesh, checkpoint_every=args.checkpoint_every, delay_s=args.delay_s)
    if jax.process_index() == 0:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
