r"""The main job: the configured stages of the GRAM-R² pipeline, resumable.

    python -m gramr2_jax.main --config=configs/demo.py --workdir=runs/demo
    python -m gramr2_jax.main --config=configs/demo.py:smoke --workdir=/tmp/smoke --config.seed=1

Rerunning the same command on the same workdir continues where it stopped.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for every artifact of the run.")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", os.environ.get("GRAMR2_MULTIHOST") == "1",
    "Call jax.distributed.initialize() (set on every worker of a TPU pod).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "With --multihost: host:port of process 0 (None: auto-detect, "
    "as on TPU pods and SLURM).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "With --multihost: process count.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "With --multihost: this process's index.")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache",
    os.environ.get("JAX_COMPILATION_CACHE_DIR", "~/.cache/gramr2_jax/jax_compilation_cache"),
    "JAX's persistent compilation cache ('' turns it off). A rerun, a resumed run or another "
    "run of a sweep loads the programs it compiled before: on the CPU demo, compiling "
    "takes about 3 of its minutes. On the CPU a copied or moved cache keeps its programs.")
flags.mark_flags_as_required(["config", "workdir"])


def configure_compilation_cache(path: str) -> None:
    """Points JAX's persistent compilation cache at path ('' = off), before JAX computes.

    JAX also names a GPU autotuning cache inside it in every program's compile options,
    so the keys of its entries hold the cache's own path: a cache copied or moved
    elsewhere misses every program. On the CPU that autotuning cache does nothing, so it
    is left out there and the keys hold no path.
    """
    import jax

    from gramr2_jax import hostmem

    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(path) if path else None)
    if path and hostmem.jax_runs_on_cpu():
        jax.config.update("jax_persistent_cache_enable_xla_caches", "none")


def main(argv):
    del argv
    import logging

    import jax
    from absl import logging as absl_logging

    # Progress from this package at INFO; libraries (orbax logs every save) at WARNING.
    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("gramr2_jax").setLevel(logging.INFO)

    jax.config.update("jax_threefry_partitionable", True)
    # '' turns it off, even where JAX_COMPILATION_CACHE_DIR is set.
    configure_compilation_cache(_COMPILATION_CACHE.value)
    from gramr2_jax import distributed

    distributed.initialize(_MULTIHOST.value, _COORDINATOR.value, _NUM_PROCESSES.value,
                           _PROCESS_ID.value)

    from gramr2_jax import config_lib
    from gramr2_jax.data.errors import exit_on_data_error
    from gramr2_jax.selftrain import pipeline

    config = config_lib.config_flag_value(_CONFIG)
    try:
        if "://" in _WORKDIR.value:
            raise ValueError(
                f"--workdir: {_WORKDIR.value!r} is a URL, but the pipeline writes plain files "
                "(atomic renames, DONE markers); mount the bucket on every worker (gcsfuse) "
                "or use a Filestore share, and pass the mounted path")
        config_lib.validate(config)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    logging.getLogger("gramr2_jax.main").info(
        "%d %s devices (%d on this process)", jax.device_count(), jax.default_backend(),
        jax.local_device_count())
    try:
        with exit_on_data_error():
            pipeline.run(config, _WORKDIR.value)
    except KeyboardInterrupt:
        # Every finished step is on disk (shards, checkpoints, DONE markers).
        print(f"\ninterrupted; rerun the same command to resume in {_WORKDIR.value}",
              file=sys.stderr)
        sys.exit(130)  # the shell's status for SIGINT


if __name__ == "__main__":
    from gramr2_jax import config_lib, host_devices, hostmem

    hostmem.configure_process()  # re-executes once with glibc malloc tunables (CPU only)
    host_devices.configure()  # one JAX device per core (CPU only)
    app.run(main, flags_parser=config_lib.parse_flags)
