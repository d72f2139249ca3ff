"""`python -m gramr2_jax.main` / `.plan`: a bad --config gives one `error:` line and exit 2."""

import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
DEMO = str(REPO / "configs" / "demo.py")


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO)


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
