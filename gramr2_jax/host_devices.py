"""One JAX device per CPU core for the pipeline's command lines: data parallelism on the host.

XLA:CPU splits each op of a program over one pool of threads, and the demo's tiny
model (hidden size 128) is made of small ops that split poorly: one decode step's
attention over 128 rows' caches read them at about 8 GB/s on a host that reads 30 GB/s
(`benchmarks/SAMPLING.md`). With one CPU device per core the pipeline shards every
batch over the mesh's `data` axis (training, and through `sharding.local_mesh` the
judge's and the prover's sampling), and each core runs its own rows of every op. On a
2-core AVX2 host the demo judge labelled 8 shards of its pool in 14.0 s against 25.7 s
on one device (1.4× inside the whole pipeline, where other work shares the cores),
while its train steps ran 0–25 % faster alone and no faster inside the pipeline.

`configure()` sets `--xla_force_host_platform_device_count` in XLA_FLAGS, so it must
run before JAX starts: call it in a `__main__` block, after `hostmem.configure_process`.
It does nothing where JAX computes on an accelerator, where XLA_FLAGS already sets the
count, or with GRAMR2_CPU_DEVICES=1. GRAMR2_CPU_DEVICES=N sets another count. The
default is the cores this process may run on, at most 8 (the demo's smallest batch is
16 rows; a mesh that does not divide a batch leaves it replicated, every device
computing all of it). Only 2 cores have been measured.

Results depend on the device count in the last float bits (the rows of a matmul and
the order of the gradient sum change with the split), so sampled tokens can part on
near-ties: compare runs made with the same count.
"""

from __future__ import annotations

import os

from gramr2_jax import hostmem

ENV = "GRAMR2_CPU_DEVICES"
MAX_DEFAULT = 8
_FLAG = "--xla_force_host_platform_device_count"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure() -> int | None:
    """Sets the CPU device count in XLA_FLAGS; returns it, or None where nothing was set."""
    flags = os.environ.get("XLA_FLAGS", "")
    if _FLAG in flags or not hostmem.jax_runs_on_cpu():
        return None
    value = os.environ.get(ENV, "").strip()
    if value:
        count = int(value) if value.isdigit() else 0
        if count < 1:
            raise SystemExit(f"error: {ENV}={value!r}: expected a device count (an integer >= 1)")
    else:
        count = min(usable_cores(), MAX_DEFAULT)
    if count == 1:
        return None
    os.environ["XLA_FLAGS"] = f"{flags} {_FLAG}={count}".strip()
    return count
