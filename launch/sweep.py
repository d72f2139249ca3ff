r"""Runs a config file's sweep, locally run after run or on a TPU VM, and tables the results.

    python launch/sweep.py --config=configs/demo.py:smoke --workdir=runs/demo_sweep \
        [--seeds=0,1,2] [--max_runs=N] [--dry_run] [--tpu=NAME --zone=Z]

The sweep is `get_sweep(arg)` in the config file (a list of {dotted.field: value} override dicts;
one run with no overrides when the file has none). Each run is
`<main_cmd> --config=<file:arg> --workdir=<workdir>/<run_name> --config.k=v ...`. Rerunning skips
runs whose final_metrics.json exists; a failed run leaves <run dir>/sweep_failed.json and the sweep
goes on. The table of all runs goes to <workdir>/results.md and results.json (see results.py).

With --tpu, this same script runs on every worker of the slice through `tpu_vm.py run` (the
workers step through the runs together, each run a multi-host job); --workdir must then be an
absolute path on a filesystem every worker mounts (a gcsfuse bucket, a Filestore share), so all
workers see the same finished runs and the runs' own artifacts.
"""

import pathlib
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence

from absl import app, flags
from etils import epath

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# `python launch/sweep.py` puts only launch/ on sys.path; config files and this script import from
# the repo root, as they can under `python -m gramr2_jax.main`.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from launch import results, sweep_runs  # pylint: disable=g-import-not-at-top

_CONFIG = flags.DEFINE_string("config", None, "Config file with optional arg: path.py[:arg].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep dir; each run gets <workdir>/<run_name>.")
_SEEDS = flags.DEFINE_list("seeds", [], "Cross every sweep point with these seeds (config.seed).")
_MAX_RUNS = flags.DEFINE_integer("max_runs", None, "Start at most this many runs this time.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands instead of running them.")
_COLLECT_ONLY = flags.DEFINE_bool("collect_only", False, "Only rebuild results.md/json.")
_METRICS = flags.DEFINE_list(
    "metrics", [], "Columns of results.md and the printed table (fnmatch patterns, in order; "
    "default: every metric). results.json always has them all.")
_MAIN_CMD = flags.DEFINE_string(
    "main_cmd", f"{shlex.quote(sys.executable)} -m gramr2_jax.main",
    "Command that starts one run (shell words); tests point it at a fake main.")
_TPU = flags.DEFINE_string("tpu", None, "Run the sweep on this TPU VM slice (needs --zone).")
_ZONE = flags.DEFINE_string("zone", None, "Zone of --tpu.")
_PROJECT = flags.DEFINE_string("project", None, "GCP project of --tpu.")


def tpu_command() -> list[str]:
    """`tpu_vm.py run` starting this script, with the same sweep flags, on every worker."""
    if "://" in _WORKDIR.value or not _WORKDIR.value.startswith("/"):
        raise ValueError("--tpu needs --workdir as an absolute path on a filesystem mounted on "
                         "every worker (e.g. a gcsfuse bucket at /mnt/gcs): the runs write plain "
                         "files there and every worker decides which runs are done from them")
    sweep_flags = [f"--config={_CONFIG.value}", f"--workdir={_WORKDIR.value}"]
    if _SEEDS.value:
        sweep_flags.append(f"--seeds={','.join(_SEEDS.value)}")
    if _MAX_RUNS.value is not None:
        sweep_flags.append(f"--max_runs={_MAX_RUNS.value}")
    location = [f"--tpu={_TPU.value}", f"--zone={_ZONE.value}"]
    if _PROJECT.value:
        location.append(f"--project={_PROJECT.value}")
    sweep_dir = _WORKDIR.value.rstrip("/").split("/")[-1]
    run_label = "sweep-" + re.sub(r"[^A-Za-z0-9._-]", "_", sweep_dir)
    return [sys.executable, str(REPO_ROOT / "launch" / "tpu_vm.py"), "run", *location,
            f"--run_name={run_label}", "--module=launch.sweep",
            *(["--dry_run"] if _DRY_RUN.value else []), "--", *sweep_flags]


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        if _TPU.value:
            if not _ZONE.value:
                raise ValueError("--tpu needs --zone")
            sys.exit(subprocess.run(tpu_command(), check=False).returncode)
        seeds = [int(seed) for seed in _SEEDS.value]
        points = sweep_runs.sweep_points(_CONFIG.value, seeds)
        runs = sweep_runs.make_runs(points, epath.Path(_WORKDIR.value))
    except ValueError as error:
        sys.exit(f"sweep.py: {error}")
    if not _COLLECT_ONLY.value:
        sweep_runs.run_locally(runs, _MAIN_CMD.value, _CONFIG.value, _MAX_RUNS.value,
                               _DRY_RUN.value)
    if not _DRY_RUN.value:
        table = results.collect(runs)
        results.write(table, epath.Path(_WORKDIR.value), _METRICS.value)
        print(results.to_markdown(table, _METRICS.value))


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
