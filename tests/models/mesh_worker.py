"""Subprocess worker: logits of an HF model dir on a given (data, fsdp, tensor) mesh.

Run as a script so XLA_FLAGS (device count) and jax.distributed are set up before
jax is imported. Writes the full logits of a fixed padded batch to --out (.npy),
from process 0.
"""

import argparse
import os
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model_dir", required=True)
    p.add_argument("--meshes", required=True, help="e.g. 8,1,1;2,4,1 (each written to out_i.npy)")
    p.add_argument("--out", required=True, help="output prefix")
    p.add_argument("--devices", type=int, default=8, help="local CPU devices")
    p.add_argument("--coordinator", default=None)
    p.add_argument("--num_processes", type=int, default=1)
    p.add_argument("--process_id", type=int, default=0)
    args = p.parse_args()
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

    import jax

    if args.coordinator:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)

    import numpy as np
    from flax import nnx
    from jax.experimental import multihost_utils
    from jax.sharding import NamedSharding, PartitionSpec as P

    from gramr2_jax import sharding
    from gramr2_jax.models import from_pretrained
    from tests.models.hf_fixtures import padded_batch

    for i, shape in enumerate(args.meshes.split(";")):
        mesh_shape = tuple(int(s) for s in shape.split(","))
        devices = jax.devices()[: np.prod(mesh_shape)]
        mesh = sharding.make_mesh(mesh_shape, devices=devices)
        model = from_pretrained(args.model_dir, mesh=mesh)
        graphdef, state = nnx.split(model)
        tokens, mask, _ = padded_batch(model.config.vocab_size, lengths=(9, 5, 12, 7, 3, 12, 10, 1))
        batch_sharding = NamedSharding(mesh, P(("data", "fsdp")))
        # Each process feeds only its own rows of the global batch.
        rows = len(tokens) // jax.process_count()
        mine = slice(jax.process_index() * rows, (jax.process_index() + 1) * rows)
        tokens_g = jax.make_array_from_process_local_data(batch_sharding, tokens[mine], tokens.shape)
        mask_g = jax.make_array_from_process_local_data(batch_sharding, mask[mine], mask.shape)

        @jax.jit  # defined and called in this iteration: graphdef is this iteration's
        def forward(state, tokens, mask):
            return nnx.merge(graphdef, state)(tokens, input_mask_BT=mask)  # noqa: B023

        with jax.set_mesh(mesh), sharding.use_rules(None):
            logits = forward(state, tokens_g, mask_g)
        logits = multihost_utils.process_allgather(logits, tiled=True)
        if jax.process_index() == 0:
            np.save(f"{args.out}_{i}.npy", np.asarray(logits))


if __name__ == "__main__":
    main()
