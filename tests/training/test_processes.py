"""Trainer runs in subprocesses: SIGKILL + resume, 8 simulated devices, 2 processes.

Each run is `python -m tests.training.run_tiny` with its own XLA_FLAGS (the test
process itself keeps 1 device).
"""

import json
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gramr2_jax.training.metrics_writer import read_metrics
from tests.conftest import REPO, subprocess_env
from tests.training import run_tiny

TIMEOUT_S = 240


def _env(devices: int) -> dict[str, str]:
    env = subprocess_env(PYTHONPATH=str(REPO))
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _command(workdir, *extra) -> list[str]:
    return [sys.executable, "-m", "tests.training.run_tiny", "--workdir", str(workdir), *extra]


def _run(workdir, *extra, devices: int = 1) -> dict:
    proc = subprocess.run(_command(workdir, *extra), cwd=REPO, env=_env(devices),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _params(workdir) -> dict[str, np.ndarray]:
    with np.load(pathlib.Path(workdir) / "result.npz") as f:
        return dict(f)


def _losses(workdir) -> list[float]:
    return [row["loss"] for row in read_metrics(pathlib.Path(workdir) / "metrics.jsonl")]


@pytest.mark.slow  # ~36 s on a 2-core AVX2 machine: three trainer processes
def test_sigkill_midway_then_rerun_matches_uninterrupted_run(tmp_path):
    run_tiny.run(str(tmp_path / "full"), steps=10, checkpoint_every=2)  # uninterrupted, here
    args = ("--steps", "10", "--checkpoint_every", "2", "--delay_s", "0.15")

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(killed, *args), cwd=REPO, env=_env(1),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + TIMEOUT_S
    try:
        while time.time() < deadline and proc.poll() is None:
            rows = read_metrics(killed / "metrics.jsonl")
            if rows and rows[-1]["step"] >= 5:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    steps_before = [r["step"] for r in read_metrics(killed / "metrics.jsonl")]
    assert 5 <= steps_before[-1] < 10
    rerun = _run(killed, *args)  # the same command again: resumes
    assert rerun["start_step"] in (2, 4, 6, 8), rerun  # from a checkpoint, not from scratch

    full, resumed = _params(tmp_path / "full"), _params(killed)
    assert full.keys() == resumed.keys()
    for name in full:
        np.testing.assert_allclose(resumed[name], full[name], atol=1e-6, rtol=0, err_msg=name)
    full_rows = read_metrics(tmp_path / "full" / "metrics.jsonl")
    resumed_rows = read_metrics(killed / "metrics.jsonl")
    assert [r["step"] for r in resumed_rows] == list(range(1, 11))
    for a, b in zip(full_rows, resumed_rows):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([b[k] for k in b], [a[k] for k in a], rtol=1e-6)


@pytest.mark.slow  # ~20 s on a 2-core AVX2 machine: two trainer processes
def test_eight_devices_match_one_device(tmp_path):
    run_tiny.run(str(tmp_path / "one"), steps=4, checkpoint_every=100)  # here: 1 device
    _run(tmp_path / "eight", "--steps", "4", "--checkpoint_every", "100", "--mesh", "2,2,2",
         devices=8)
    np.testing.assert_allclose(_losses(tmp_path / "eight"), _losses(tmp_path / "one"),
                               rtol=1e-5)


@pytest.mark.multihost
@pytest.mark.slow  # ~50 s: two JAX processes plus a reference run
def test_two_processes_match_one_process(tmp_path):
    portpicker = pytest.importorskip("portpicker")
    args = ("--steps", "4", "--checkpoint_every", "2")
    run_tiny.run(str(tmp_path / "one"), steps=4, checkpoint_every=2)  # here: 1 device

    port = portpicker.pick_unused_port()
    shared = tmp_path / "two"
    procs = [subprocess.Popen(
        _command(shared, *args, "--mesh", "4,1,2", "--batch_size", "4",
                 "--coordinator", f"127.0.0.1:{port}", "--num_processes", "2",
                 "--process_id", str(i)),
        cwd=REPO, env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)]
    try:
        outputs = [p.communicate(timeout=TIMEOUT_S)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    np.testing.assert_allclose(_losses(shared), _losses(tmp_path / "one"), rtol=1e-5)
    one, two = _params(tmp_path / "one"), _params(shared)
    for name in one:
        np.testing.assert_allclose(two[name], one[name], atol=1e-5, err_msg=name)
