"""Multi-host setup: `jax.distributed` behind a flag, and host-local → global batches.

Every host runs the same program. Each host's loader yields only its own rows
of the global batch (rows [h·b, (h+1)·b) for host h, see data/loader.py);
`host_local_to_global` stitches them into one global jax.Array per key,
sharded over the data-parallel mesh axes, without any host holding it all.
"""

from __future__ import annotations

from typing import Mapping

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec


def initialize(enabled: bool, coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None) -> None:
    """Starts jax.distributed when `enabled` (arguments None = auto-detect, e.g. on TPU pods).

    Must run before anything touches a JAX backend. On CPU, cross-process
    collectives need gloo, which must be selected before initialization.
    """
    if not enabled:
        return
    # Only affects the CPU backend; harmless on TPU/GPU hosts.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)


def host_local_to_global(batch: Mapping[str, np.ndarray], mesh: jax.sharding.Mesh,
                         spec: PartitionSpec) -> dict[str, jax.Array]:
    """Global arrays from this host's rows; `spec` shards the leading (batch) dim.

    The global batch size is the local one times the number of hosts, so all
    hosts must pass batches of equal shapes.
    """
    sharding = NamedSharding(mesh, spec)
    return {key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
            for key, value in batch.items()}
