"""gcloud command lines for a Cloud TPU VM slice: pure builders, no flags (tpu_vm.py is the CLI).

Layout on each worker: ~/gramr2_jax/{code/<commit>, code/current, venv, runs/<run_name>/}.
"""

import pathlib
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Unquoted $HOME so the remote shell expands it (a quoted "~" would not be).
REMOTE_ROOT = "$HOME/gramr2_jax"
REMOTE_CODE = f"{REMOTE_ROOT}/code/current"
REMOTE_PYTHON = f"{REMOTE_ROOT}/venv/bin/python"

# Default runtime images per TPU generation (Cloud TPU docs); --version overrides.
RUNTIME_IMAGES = {
    "v4": "tpu-ubuntu2204-base",
    "v5litepod": "v2-alpha-tpuv5-lite",
    "v5p": "v2-alpha-tpuv5",
    "v6e": "v2-alpha-tpuv6e",
}



def is_multi_host(accelerator_type: str) -> bool:
    """Whether a slice spans several hosts: every generation puts at most 8 of its units per host.

    The number after the dash counts TensorCores on v2-v4/v5p and chips on v5e/v6e; either way the
    largest single-host slice is `-8`.
    """
    match = re.fullmatch(r"(v\d+[a-z]*)-(\d+)", accelerator_type)
    if not match:
        raise ValueError(f"--accelerator_type={accelerator_type!r}: expected e.g. v4-32 or v5p-64")
    return int(match.group(2)) > 8


class Gcloud:
    """Builds `gcloud compute tpus tpu-vm ...` argv lists for one slice."""

    def __init__(self, tpu: str, zone: str, project: str | None = None):
        self.tpu = tpu
        self.location = [f"--zone={zone}"] + ([f"--project={project}"] if project else [])

    def create(self, accelerator_type: str, version: str | None, capacity: str) -> list[str]:
        if version is None:
            generation = accelerator_type.split("-")[0]
            if generation not in RUNTIME_IMAGES:
                raise ValueError(f"no default runtime image for {accelerator_type}; pass --version")
            version = RUNTIME_IMAGES[generation]
        is_multi_host(accelerator_type)  # validates the name before anything is created
        capacity_flag = [] if capacity == "standard" else [f"--{capacity}"]
        return ["gcloud", "compute", "tpus", "tpu-vm", "create", self.tpu, *self.location,
                f"--accelerator-type={accelerator_type}", f"--version={version}", *capacity_flag]

    def ssh(self, command: str, worker: str = "all") -> list[str]:
        return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", self.tpu, *self.location,
                f"--worker={worker}", "--command", command]

    def scp_to_workers(self, local: str, remote: str) -> list[str]:
        return ["gcloud", "compute", "tpus", "tpu-vm", "scp", local, f"{self.tpu}:{remote}",
                *self.location, "--worker=all"]

    def scp_from_workers(self, remote: str, local: str) -> list[str]:
        return ["gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse", f"{self.tpu}:{remote}",
                local, *self.location, "--worker=all"]

    def delete(self) -> list[str]:
        return ["gcloud", "compute", "tpus", "tpu-vm", "delete", self.tpu, *self.location,
                "--quiet"]


def sync_commands(gcloud: Gcloud, commit: str) -> list[list[str]]:
    """Ships `git archive <commit>` to every worker and points code/current at it.

    A tarball rather than `git clone` on the workers: they need no git credentials or route to the
    code host, every worker gets the same bytes, and runs started earlier keep their own tree.
    """
    tarball = f"/tmp/gramr2_jax-{commit}.tar.gz"
    code_dir = f"{REMOTE_ROOT}/code/{commit}"
    unpack = (f"set -e; mkdir -p {code_dir}; tar xzf {tarball} -C {code_dir}; "
              f"echo {commit} > {code_dir}/COMMIT; ln -sfn {code_dir} {REMOTE_CODE}")
    archive = ["git", "-C", str(REPO_ROOT), "archive", "--format=tar.gz", f"--output={tarball}",
               commit]
    return [archive,
            gcloud.scp_to_workers(tarball, tarball),
            gcloud.ssh(unpack)]


def setup_command(gcloud: Gcloud) -> list[str]:
    # Runs the script of the synced commit, so code and pins always come from the same commit.
    return gcloud.ssh(f"bash {REMOTE_CODE}/launch/setup_tpu_vm.sh")


def check_single_worker(worker: str, accelerator_type: str | None) -> None:
    """Refuses a one-worker job on a multi-host slice: the other hosts never join, it hangs."""
    if worker == "all":
        return
    if accelerator_type is None or is_multi_host(accelerator_type):
        raise ValueError(
            f"--worker={worker} starts the job on one worker only; on a multi-host slice the other "
            "workers never join jax.distributed and the job deadlocks (jax#22436). Use --worker=all"
            " (pass --accelerator_type of a single-host slice, e.g. v4-8, to allow one worker).")


def run_command(gcloud: Gcloud, run_name: str, module: str, args: Sequence[str],
                env: Sequence[str] = (), worker: str = "all") -> list[str]:
    """Starts `python -m module args` on the workers, detached so an ssh drop does not kill it."""
    for item in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", item):
            raise ValueError(f"--env={item!r}: expected KEY=VALUE")
    run_dir = f"{REMOTE_ROOT}/runs/{run_name}"
    # Quote only the value: a quoted `'K=V'` is a command name to the shell, not an assignment.
    env_words = ["GRAMR2_MULTIHOST=1", "PYTHONUNBUFFERED=1",
                 *(f"{key}={shlex.quote(value)}" for key, value in (e.split("=", 1) for e in env))]
    program = shlex.join(["-m", module, *args])
    # setsid + nohup + </dev/null: the job outlives the ssh session; $! is its process group.
    script = (f"set -e; mkdir -p {run_dir}; cd {REMOTE_CODE}; log={run_dir}/$(hostname).log; "
              f"{' '.join(env_words)} setsid nohup {REMOTE_PYTHON} {program} "
              "> $log 2>&1 < /dev/null & "
              f"echo $! > {run_dir}/$(hostname).pid; echo \"$(hostname): pid $! log $log\"")
    return gcloud.ssh(script, worker)


def logs_commands(gcloud: Gcloud, run_name: str, lines: int, follow: bool,
                  collect_to: str | None, worker: str = "all") -> list[list[str]]:
    if collect_to:
        # Log files are named by hostname, so the workers' copies land side by side.
        return [gcloud.scp_from_workers(f"gramr2_jax/runs/{run_name}", collect_to)]
    tail = "tail -F" if follow else "tail"
    return [gcloud.ssh(f"{tail} -n {lines} {REMOTE_ROOT}/runs/{run_name}/*.log", worker)]


def stop_command(gcloud: Gcloud, run_name: str) -> list[str]:
    # Kills the process group on every worker: a job left alive on one host holds its TPU chips.
    pid_file = f"{REMOTE_ROOT}/runs/{run_name}/$(hostname).pid"
    return gcloud.ssh(f"kill -- -$(cat {pid_file}) && echo \"$(hostname): stopped\"")


def execute(commands: Sequence[Sequence[str]], dry_run: bool) -> None:
    """Prints (dry run) or runs the commands in order, stopping at the first failure."""
    for argv in commands:
        if dry_run:
            print(shlex.join(argv))
        else:
            print("+", shlex.join(argv), file=sys.stderr, flush=True)
            subprocess.run(argv, check=True)


def resolve_commit(ref: str) -> str:
    """The full commit id of `ref`; warns that uncommitted edits are not shipped."""
    git = ["git", "-C", str(REPO_ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--verify", f"{ref}^{{commit}}"], check=True,
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], check=True,
                           capture_output=True, text=True).stdout.strip()
    if dirty:
        print(f"note: sync ships commit {commit[:12]}; uncommitted changes are not included.",
              file=sys.stderr)
    return commit
