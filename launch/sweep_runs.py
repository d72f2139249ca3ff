"""A sweep as runs: expansion of a config file's get_sweep(arg), names, and local execution.

No flags here (sweep.py is the CLI), so this module can be imported anywhere.
"""

import dataclasses
import importlib.util
import json
import pathlib
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence

from etils import epath

from launch import results


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    overrides: dict[str, object]
    workdir: epath.Path

    def command(self, main_cmd: str, config: str) -> list[str]:
        overrides = [f"--config.{key}={value}" for key, value in self.overrides.items()]
        return [*shlex.split(main_cmd), f"--config={config}", f"--workdir={self.workdir}",
                *overrides]


def load_config_module(config: str):
    """Imports the config file named by `path.py[:arg]`; returns (module, arg or None)."""
    path, _, arg = config.partition(":")
    spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"--config={config!r}: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, (arg or None)


def sweep_points(config: str, seeds: Sequence[int]) -> list[dict[str, object]]:
    """The override dicts of the sweep, crossed with `seeds`, checked against get_config(arg)."""
    module, arg = load_config_module(config)
    points = module.get_sweep(arg) if hasattr(module, "get_sweep") else [{}]
    if seeds:
        for point in points:
            if "seed" in point:
                raise ValueError(f"sweep point {point} sets seed already; drop --seeds")
        points = [{**point, "seed": seed} for point in points for seed in seeds]
    # Fail before launching anything when an override names a field the config lacks.
    base = module.get_config(arg)
    for point in points:
        for key in point:
            node = base
            for part in key.split("."):
                if part not in node:
                    raise ValueError(f"sweep override {key!r}: config has no field {part!r}")
                node = node[part]
    return points


def run_name(overrides: dict[str, object]) -> str:
    """A readable, path-safe name such as `selftrain.variant=full,seed=0`."""
    if not overrides:
        return "default"
    words = [f"{key}={value}" for key, value in overrides.items()]
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", ",".join(words))


def make_runs(points: Sequence[dict[str, object]], workdir: epath.Path) -> list[Run]:
    runs = [Run(run_name(point), dict(point), workdir / run_name(point)) for point in points]
    names = [run.name for run in runs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"sweep points map to the same run name: {duplicates}")
    return runs


def run_locally(runs: Sequence[Run], main_cmd: str, config: str, max_runs: int | None,
                dry_run: bool) -> None:
    """Runs the unfinished runs in order; records failures and goes on."""
    started = 0
    for run in runs:
        if (run.workdir / results.FINAL_METRICS).exists():
            print(f"[sweep] {run.name}: done, skipped", file=sys.stderr)
            continue
        if max_runs is not None and started >= max_runs:
            print(f"[sweep] --max_runs={max_runs} reached; rerun to continue", file=sys.stderr)
            return
        started += 1
        command = run.command(main_cmd, config)
        if dry_run:
            print(shlex.join(command))
            continue
        print(f"[sweep] {run.name}: {shlex.join(command)}", file=sys.stderr, flush=True)
        returncode = subprocess.run(command, check=False).returncode
        failure = run.workdir / results.FAILED
        if returncode == 0:
            failure.unlink(missing_ok=True)
        else:
            print(f"[sweep] {run.name}: failed with exit code {returncode}", file=sys.stderr)
            run.workdir.mkdir(parents=True, exist_ok=True)
            failure.write_text(json.dumps({"returncode": returncode, "command": command}))
