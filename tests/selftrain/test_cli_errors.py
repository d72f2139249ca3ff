"""`python -m gramr2_jax.main` / `.plan`: a bad --config gives one `error:` line and exit 2;
Ctrl-C gives one line and exit 130."""

import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, subprocess_env

DEMO = str(REPO / "configs" / "demo.py")


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env=subprocess_env())


@pytest.mark.parametrize("config, extra, expected", [
    ("{tmp}/missing.py", (), "No such file or directory: '{tmp}/missing.py'"),
    ("{tmp}/bad.py", (), "{tmp}/bad.py:2: '(' was never closed"),
    (DEMO + ":bogus=1", (), "config arg: unknown key 'bogus'"),
    (DEMO, ("--config.no_such_field=3",), "no field 'no_such_field'"),
    (DEMO, ("--config.seed=abc",), "--config.seed=abc: invalid literal for int()"),
    (DEMO, ("--config.selftrain.retrain_from=stage1",), "selftrain.retrain_from: expected one "
     "of ('base', 'seed', 'previous'), got 'stage1'"),
])
def test_bad_config_is_one_line(tmp_path, config, extra, expected):
    (tmp_path / "bad.py").write_text("def get_config():\n    return (\n")
    fill = lambda s: s.format(tmp=tmp_path)  # noqa: E731
    proc = _run("gramr2_jax.main", f"--config={fill(config)}", f"--workdir={tmp_path}/w", *extra)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and fill(expected) in proc.stderr, proc.stderr
    assert not (tmp_path / "w").exists()


def test_plan_missing_config(tmp_path):
    proc = _run("gramr2_jax.plan", f"--config={tmp_path}/missing.py")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: --config:") and "missing.py" in proc.stderr


# A process started with SIGINT ignored (a background job of a script, as CI may run us)
# passes that on to its children, and Python then installs no KeyboardInterrupt handler at
# all. This restores the default, then execs the given python arguments (a preexec_fn
# would fork the multithreaded test process, which JAX warns against).
_WITH_DEFAULT_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


def test_ctrl_c_says_how_to_resume(tmp_path):
    """SIGINT mid-run: one line saying to rerun, exit 130, no traceback of ours. (JAX's
    garbage-collection callback can swallow an interrupt and print it, jax-ml/jax#18246,
    so the signal repeats until the run ends.)"""
    workdir = tmp_path / "w"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WITH_DEFAULT_SIGINT, "-m", "gramr2_jax.main",
         f"--config={DEMO}:smoke", f"--workdir={workdir}", "--compilation_cache="], cwd=REPO,
        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (workdir / "config.json").exists():  # inside the pipeline
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        while proc.poll() is None and time.monotonic() < deadline:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    # The only tracebacks allowed are those of interrupts JAX's gc callback swallowed.
    swallowed = stderr.count("Exception ignored in: <function _xla_gc_callback")
    assert stderr.count("Traceback") == swallowed, stderr[-3000:]
    assert stderr.rstrip().endswith(
        f"interrupted; rerun the same command to resume in {workdir}"), stderr[-3000:]
