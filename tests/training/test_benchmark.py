"""The training benchmark's --quick path runs both sides (no timing assertions)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.training.test_processes import REPO, _env


@pytest.mark.hf
@pytest.mark.slow  # ~30 s: imports torch + transformers, compiles both sides
def test_quick_benchmark_runs_both_sides():
    proc = subprocess.run([sys.executable, "-m", "gramr2_jax.benchmarks.training", "--quick"],
                          cwd=REPO, env=_env(1), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    # The peak is the higher of the readings before and after the steps (common.record_peak).
    assert result["matmul_peak_gflops"] == max(result["matmul_peak_gflops_before_after"]) > 0
    for side in ("jax", "torch"):
        assert result[side]["tokens_per_s"] > 0 and result[side]["mfu"] > 0
        # Both start from a random init on the same tokens: loss ≈ ln(vocab).
        assert abs(result[side]["first_loss"] - np.log(256)) < 0.3, result[side]
