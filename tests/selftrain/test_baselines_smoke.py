"""The same-data baselines (Bradley-Terry head, GRAM-v1 verdict token) through main, and resumed."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, subprocess_env

pytestmark = pytest.mark.slow  # ~30 s: stage 0, stage 1 and both baselines


def _run(workdir):
    return subprocess.run(
        [sys.executable, "-m", "gramr2_jax.main",
         "--config=configs/demo.py:smoke,variant=baselines", f"--workdir={workdir}"], cwd=REPO, env=subprocess_env(),
        capture_output=True, text=True, timeout=900)


def test_baselines_train_evaluate_and_resume(tmp_path):
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    metrics = json.loads((tmp_path / "final_metrics.json").read_text())
    for name in ("bt", "verdict"):
        assert (tmp_path / "baselines" / name / "train" / "export" / "config.json").exists()
        for split in ("test_id", "test_ood"):
            assert 0.0 <= metrics[f"{name}/{split}/accuracy"] <= 1.0
    assert "| bt |" in (tmp_path / "report.md").read_text()
    # A rerun finds every stage done: nothing is retrained or rewritten, the same metrics.
    done = sorted(tmp_path.glob("**/DONE"))
    stamps = [p.stat().st_mtime_ns for p in done]
    again = _run(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [p.stat().st_mtime_ns for p in done] == stamps and len(done) >= 5
    assert json.loads((tmp_path / "final_metrics.json").read_text()) == metrics
