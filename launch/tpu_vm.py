r"""Create, set up, sync, run on, and delete a Cloud TPU VM slice with gcloud.

    python launch/tpu_vm.py create --tpu=NAME --zone=Z --accelerator_type=v4-32 [--capacity=spot]
    python launch/tpu_vm.py sync   --tpu=NAME --zone=Z [--ref=HEAD]
    python launch/tpu_vm.py setup  --tpu=NAME --zone=Z
    python launch/tpu_vm.py run    --tpu=NAME --zone=Z --run_name=R -- --config=configs/x.py ...
    python launch/tpu_vm.py logs   --tpu=NAME --zone=Z --run_name=R [--follow] [--collect_to=DIR]
    python launch/tpu_vm.py stop   --tpu=NAME --zone=Z --run_name=R
    python launch/tpu_vm.py delete --tpu=NAME --zone=Z

Every subcommand takes --dry_run: it prints the exact commands, one per line, and runs nothing.
See gcloud_commands.py for what each command does on the workers.
"""

import pathlib
import re
import sys
from collections.abc import Sequence

from absl import app, flags

REPO_ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if REPO_ROOT not in sys.path:  # `python launch/tpu_vm.py` puts only launch/ on sys.path
    sys.path.insert(0, REPO_ROOT)
from launch import gcloud_commands as gc  # pylint: disable=g-import-not-at-top

SUBCOMMANDS = ("create", "setup", "sync", "run", "logs", "stop", "delete")

_TPU = flags.DEFINE_string("tpu", None, "TPU VM (slice) name.")
_ZONE = flags.DEFINE_string("zone", None, "GCP zone, e.g. us-central2-b.")
_PROJECT = flags.DEFINE_string("project", None, "GCP project; gcloud's default when unset.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands instead of running them.")
_ACCELERATOR = flags.DEFINE_string(
    "accelerator_type", None, "e.g. v4-32, v5litepod-64, v5p-64. Required by create; lets run "
    "check whether a single --worker is safe.")
_VERSION = flags.DEFINE_string("version", None, "Runtime image; default by generation.")
_CAPACITY = flags.DEFINE_enum(
    "capacity", "standard", ["standard", "spot", "preemptible"], "create: capacity type.")
_REF = flags.DEFINE_string("ref", "HEAD", "sync: git commit (or ref) to ship.")
_RUN_NAME = flags.DEFINE_string("run_name", None, "run/logs/stop: names ~/gramr2_jax/runs/<name>.")
_MODULE = flags.DEFINE_string("module", "gramr2_jax.main", "run: python module to start.")
_ENV = flags.DEFINE_multi_string("env", [], "run: KEY=VALUE set on every worker (repeatable).")
_WORKER = flags.DEFINE_string("worker", "all", "run/logs: 'all' or one worker index.")
_FOLLOW = flags.DEFINE_bool("follow", False, "logs: keep streaming (tail -F).")
_LINES = flags.DEFINE_integer("lines", 50, "logs: lines per worker log.")
_COLLECT_TO = flags.DEFINE_string(
    "collect_to", None, "logs: copy the run dir of every worker here.")


def _required(flag: flags.FlagHolder, subcommand: str) -> str:
    if flag.value is None:
        raise ValueError(f"{subcommand} needs --{flag.name}")
    return flag.value


def build_commands(subcommand: str, extra_args: Sequence[str]) -> list[list[str]]:
    """The commands for one subcommand, from the flags."""
    if subcommand not in SUBCOMMANDS:
        raise ValueError(f"unknown subcommand {subcommand!r}; one of {', '.join(SUBCOMMANDS)}")
    if extra_args and subcommand != "run":
        raise ValueError(f"{subcommand} takes no positional arguments: {list(extra_args)}")
    gcloud = gc.Gcloud(_required(_TPU, subcommand), _required(_ZONE, subcommand), _PROJECT.value)
    if subcommand == "create":
        return [gcloud.create(_required(_ACCELERATOR, subcommand), _VERSION.value, _CAPACITY.value)]
    if subcommand == "setup":
        return [gc.setup_command(gcloud)]
    if subcommand == "sync":
        return gc.sync_commands(gcloud, gc.resolve_commit(_REF.value))
    if subcommand == "delete":
        return [gcloud.delete()]
    run_name = _required(_RUN_NAME, subcommand)
    if not re.fullmatch(r"[A-Za-z0-9._-]+", run_name):
        raise ValueError(f"--run_name={run_name!r}: use letters, digits, '.', '_', '-'")
    if subcommand == "run":
        gc.check_single_worker(_WORKER.value, _ACCELERATOR.value)
        return [gc.run_command(gcloud, run_name, _MODULE.value, extra_args, _ENV.value,
                               _WORKER.value)]
    if subcommand == "logs":
        return gc.logs_commands(gcloud, run_name, _LINES.value, _FOLLOW.value, _COLLECT_TO.value,
                             _WORKER.value)
    return [gc.stop_command(gcloud, run_name)]


def main(argv: Sequence[str]) -> None:
    if len(argv) < 2:
        raise app.UsageError(f"usage: tpu_vm.py {{{','.join(SUBCOMMANDS)}}} [flags] [-- args]")
    try:
        commands = build_commands(argv[1], argv[2:])
    except ValueError as error:
        sys.exit(f"tpu_vm.py {argv[1]}: {error}")
    gc.execute(commands, _DRY_RUN.value)


if __name__ == "__main__":
    app.run(main)
