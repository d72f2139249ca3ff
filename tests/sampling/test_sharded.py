"""Sharded sampling on 8 simulated CPU devices gives the 1-device tokens.

Runs in a subprocess: the device count is fixed when jax starts, and the rest
of the test session uses one device.
"""

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def test_sharded_sampling_matches_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "tests.sampling.sharded_check"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["param_specs_sharded"], report
    assert report["greedy"] and report["topp"], report
    assert report["greedy_logprob_diff"] < 1e-4 and report["topp_logprob_diff"] < 1e-4, report
    assert report["score_diff"] < 1e-4, report
    assert report["sharded_packs"] and report["packed"], report
    assert report["packed_logprob_diff"] < 1e-4, report
