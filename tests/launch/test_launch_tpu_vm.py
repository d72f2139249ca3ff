"""tpu_vm.py: exact gcloud argv per subcommand (--dry_run), quoting, refusals; the setup script."""

import os
import pathlib
import shlex
import subprocess
import sys
import time

import pytest

from launch import gcloud_commands

REPO = pathlib.Path(__file__).resolve().parents[2]
TPU_VM = str(REPO / "launch" / "tpu_vm.py")
SSH = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod", "--zone=us-central2-b"]


def dry_run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    subcommand, *rest = args
    result = subprocess.run([sys.executable, TPU_VM, subcommand, "--tpu=pod",
                             "--zone=us-central2-b", "--dry_run", *rest],
                            capture_output=True, text=True, cwd=REPO)
    assert (result.returncode == 0) == ok, result.stderr
    return result


def commands(*args: str) -> list[list[str]]:
    return [shlex.split(line) for line in dry_run(*args).stdout.splitlines()]


def remote_words(argv: list[str]) -> list[str]:
    """The remote shell command of an ssh argv, split the way the remote shell splits it."""
    assert argv[-2] == "--command"
    return shlex.split(argv[-1])


def test_create():
    assert commands("create", "--accelerator_type=v4-32") == [[
        "gcloud", "compute", "tpus", "tpu-vm", "create", "pod", "--zone=us-central2-b",
        "--accelerator-type=v4-32", "--version=tpu-ubuntu2204-base"]]
    [argv] = commands("create", "--accelerator_type=v5litepod-64", "--capacity=spot",
                      "--project=my-proj")
    assert argv[6:] == ["--zone=us-central2-b", "--project=my-proj",
                        "--accelerator-type=v5litepod-64", "--version=v2-alpha-tpuv5-lite", "--spot"]
    [argv] = commands("create", "--accelerator_type=v5p-64", "--version=my-image",
                      "--capacity=preemptible")
    assert argv[-2:] == ["--version=my-image", "--preemptible"]


def test_create_without_known_image_asks_for_version():
    result = dry_run("create", "--accelerator_type=v9x-16", ok=False)
    assert "pass --version" in result.stderr and result.stdout == ""


def test_setup_runs_the_synced_script_on_all_workers():
    assert commands("setup") == [
        SSH + ["--worker=all", "--command",
               "bash $HOME/gramr2_jax/code/current/launch/setup_tpu_vm.sh"]]


def test_sync_ships_a_commit_tarball_to_all_workers():
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    tarball = f"/tmp/gramr2_jax-{commit}.tar.gz"
    archive, scp, ssh = commands("sync")
    assert archive == ["git", "-C", str(REPO), "archive", "--format=tar.gz", f"--output={tarball}",
                       commit]
    assert scp == ["gcloud", "compute", "tpus", "tpu-vm", "scp", tarball, f"pod:{tarball}",
                   "--zone=us-central2-b", "--worker=all"]
    assert ssh[:-2] == SSH + ["--worker=all"]
    code_dir = f"$HOME/gramr2_jax/code/{commit}"
    assert ssh[-1] == (f"set -e; mkdir -p {code_dir}; tar xzf {tarball} -C {code_dir}; "
                       f"echo {commit} > {code_dir}/COMMIT; "
                       f"ln -sfn {code_dir} $HOME/gramr2_jax/code/current")


def test_run_quotes_args_and_detaches_on_all_workers():
    args = ["--config=configs/demo.py:size=tiny,smoke", "--workdir=/mnt/gcs/run 1",
            "--config.note=it's \"quoted\" $HOME"]
    [argv] = commands("run", "--run_name=exp1", "--env=XLA_FLAGS=--a=1 --b=2", "--", *args)
    assert argv[:-2] == SSH + ["--worker=all"]
    assert "XLA_FLAGS='--a=1 --b=2' setsid" in argv[-1]  # an assignment, not a quoted word
    words = remote_words(argv)
    start = words.index("setsid")
    assert words[start - 3:start] == ["GRAMR2_MULTIHOST=1", "PYTHONUNBUFFERED=1",
                                      "XLA_FLAGS=--a=1 --b=2"]
    assert words[start:start + 5] == ["setsid", "nohup", "$HOME/gramr2_jax/venv/bin/python", "-m",
                                      "gramr2_jax.main"]
    # The remote shell sees each argument exactly as given: spaces, quotes and $ survive.
    assert words[start + 5:start + 8] == args
    assert words[start + 8:start + 14] == [">", "$log", "2>&1", "<", "/dev/null", "&"]
    assert "log=$HOME/gramr2_jax/runs/exp1/$(hostname).log;" in words
    assert "$HOME/gramr2_jax/runs/exp1/$(hostname).pid;" in words


def test_run_script_detaches_and_logs_per_worker(tmp_path):
    """Runs the remote script of `run` under bash with a fake $HOME standing in for a worker."""
    code = tmp_path / "gramr2_jax" / "code" / "current" / "fakemain"
    code.mkdir(parents=True)
    (code / "__main__.py").write_text(
        "import os, sys\nprint(sys.argv[1:], os.environ['GRAMR2_MULTIHOST'], os.environ['X'])\n")
    venv_bin = tmp_path / "gramr2_jax" / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    args = ["--a=it's", "b c"]
    [argv] = commands("run", "--run_name=t1", "--module=fakemain", "--env=X=a b", "--", *args)
    subprocess.run(["bash", "-c", argv[-1]], env={**os.environ, "HOME": str(tmp_path)}, check=True)
    run_dir = tmp_path / "gramr2_jax" / "runs" / "t1"
    host = subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    pid = int((run_dir / f"{host}.pid").read_text())
    while os.path.exists(f"/proc/{pid}"):  # the detached job exits on its own
        time.sleep(0.05)
    assert (run_dir / f"{host}.log").read_text() == f"{args} 1 a b\n"


@pytest.mark.parametrize("extra", [[], ["--accelerator_type=v4-32"], ["--accelerator_type=v5p-16"]])
def test_run_on_one_worker_of_a_multi_host_slice_is_refused(extra):
    result = dry_run("run", "--run_name=r", "--worker=0", *extra, ok=False)
    assert "deadlocks" in result.stderr and "--worker=all" in result.stderr
    assert result.stdout == ""  # nothing printed, nothing run


def test_run_on_one_worker_of_a_single_host_slice_is_allowed():
    [argv] = commands("run", "--run_name=r", "--worker=0", "--accelerator_type=v4-8")
    assert "--worker=0" in argv


def test_run_rejects_unsafe_run_names_and_env():
    assert "--run_name" in dry_run("run", "--run_name=a b", ok=False).stderr
    assert "KEY=VALUE" in dry_run("run", "--run_name=r", "--env=novalue", ok=False).stderr


def test_logs_stop_delete():
    runs = "$HOME/gramr2_jax/runs/exp1"
    assert commands("logs", "--run_name=exp1") == [
        SSH + ["--worker=all", "--command", f"tail -n 50 {runs}/*.log"]]
    [argv] = commands("logs", "--run_name=exp1", "--follow", "--lines=5")
    assert argv[-1] == f"tail -F -n 5 {runs}/*.log"
    assert commands("logs", "--run_name=exp1", "--collect_to=out/logs") == [[
        "gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse", "pod:gramr2_jax/runs/exp1",
        "out/logs", "--zone=us-central2-b", "--worker=all"]]
    assert commands("stop", "--run_name=exp1") == [SSH + [
        "--worker=all", "--command",
        f"kill -- -$(cat {runs}/$(hostname).pid) && echo \"$(hostname): stopped\""]]
    assert commands("delete") == [[
        "gcloud", "compute", "tpus", "tpu-vm", "delete", "pod", "--zone=us-central2-b", "--quiet"]]


def test_unknown_subcommand_and_stray_args():
    assert "unknown subcommand" in dry_run("launch", ok=False).stderr
    assert "positional" in dry_run("setup", "--", "x", ok=False).stderr


@pytest.mark.parametrize("accelerator_type, multi_host", [
    ("v4-8", False), ("v4-16", True), ("v4-32", True), ("v5litepod-8", False),
    ("v5litepod-16", True), ("v5litepod-64", True), ("v5p-8", False), ("v5p-64", True),
    ("v6e-8", False), ("v6e-256", True)])
def test_is_multi_host(accelerator_type, multi_host):
    assert gcloud_commands.is_multi_host(accelerator_type) is multi_host


def test_is_multi_host_rejects_bad_names():
    with pytest.raises(ValueError, match="v4-32"):
        gcloud_commands.is_multi_host("v4_32")


FAKE_PYTHON3 = """#!/usr/bin/env bash
# Stands in for python3: `-m venv DIR` makes a venv whose python logs its arguments.
mkdir -p "$3/bin"
cat > "$3/bin/python" <<'PY'
#!/usr/bin/env bash
echo "$*" >> "$FAKE_PIP_LOG"
if [[ "$1" == "-" ]]; then cat > /dev/null; echo "worker: jax pinned"; fi
PY
chmod +x "$3/bin/python"
"""


def test_setup_script_is_idempotent_and_reinstalls_on_a_changed_pin(tmp_path):
    repo = tmp_path / "repo"
    (repo / "launch").mkdir(parents=True)
    for name in ("setup_tpu_vm.sh", "versions.env"):
        (repo / "launch" / name).write_text((REPO / "launch" / name).read_text())
    (repo / "requirements.txt").write_text("flax==0.12.8\n")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "python3").write_text(FAKE_PYTHON3)
    (fake_bin / "python3").chmod(0o755)
    pip_log = tmp_path / "pip.log"
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}", "FAKE_PIP_LOG": str(pip_log),
           "GRAMR2_VENV": str(tmp_path / "venv")}

    def setup() -> str:
        result = subprocess.run(["bash", str(repo / "launch" / "setup_tpu_vm.sh")], env=env,
                                capture_output=True, text=True, check=True)
        return result.stdout

    jax_version = tpu_vm_pin("JAX_VERSION")
    assert "jax pinned" in setup()
    calls = pip_log.read_text().splitlines()
    assert f"-m pip install -q jax[tpu]=={jax_version} -f {tpu_vm_pin('LIBTPU_FIND_LINKS')}" in calls
    assert any(c.startswith("-m pip install -q -r requirements.txt -c ") for c in calls)

    assert "already set up" in setup()
    assert pip_log.read_text().splitlines() == calls  # second run installs nothing

    (repo / "requirements.txt").write_text("flax==0.12.9\n")
    setup()
    assert len(pip_log.read_text().splitlines()) > len(calls)


def tpu_vm_pin(name: str) -> str:
    for line in (REPO / "launch" / "versions.env").read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1]
    raise KeyError(name)
