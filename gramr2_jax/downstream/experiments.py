r"""Downstream experiments of a trained judge, dispatched on config.experiment.

    python -m gramr2_jax.downstream.experiments --config=configs/adaptation.py \
        --workdir=runs/adaptation
    python -m gramr2_jax.downstream.experiments --config=configs/rlhf.py --workdir=runs/rlhf

Rerunning the same command on the same workdir resumes (finished stages are read back).
"""

import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for every artifact of the run.")
flags.mark_flags_as_required(["config", "workdir"])

EXPERIMENTS = ("adaptation", "rlhf")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import logging

    import jax
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("gramr2_jax").setLevel(logging.INFO)
    jax.config.update("jax_threefry_partitionable", True)

    from gramr2_jax import config_lib

    config = config_lib.config_flag_value(_CONFIG)
    try:
        config_lib.validate(config)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if config.experiment == "adaptation":
        from gramr2_jax.downstream import adaptation

        adaptation.run(config, _WORKDIR.value)
    elif config.experiment == "rlhf":
        from gramr2_jax.downstream import rlhf

        rlhf.run(config, _WORKDIR.value)
    else:
        raise app.UsageError(f"config.experiment: {config.experiment!r} is not one of "
                             f"{EXPERIMENTS}")


if __name__ == "__main__":
    from gramr2_jax import config_lib, hostmem

    hostmem.configure_process()  # re-executes once with glibc malloc tunables (CPU only)
    app.run(main, flags_parser=config_lib.parse_flags)
