"""Ablation variants of one seed share data, stage 0 and stage 1 through the stage cache."""

import json
import subprocess
import sys

import pytest

from configs import demo
from gramr2_jax.selftrain import stage_cache
from tests.conftest import REPO, subprocess_env


def test_fingerprints_follow_the_config_sections_of_each_stage():
    full, label_only = demo.get_config("variant=full"), demo.get_config("variant=label_only")
    other_seed = demo.get_config("variant=full,seed=1")
    for stage in stage_cache.STAGE_SECTIONS:
        assert stage_cache.fingerprint(full, stage) == stage_cache.fingerprint(label_only, stage)
    assert stage_cache.fingerprint(full, "data") == stage_cache.fingerprint(other_seed, "data")
    for stage in ("stage0", "stage1"):
        assert stage_cache.fingerprint(full, stage) != stage_cache.fingerprint(other_seed, stage)
    longer_sft = demo.get_config("variant=full")
    longer_sft.stage1.epochs += 1
    assert stage_cache.fingerprint(full, "stage0") == stage_cache.fingerprint(longer_sft, "stage0")
    assert stage_cache.fingerprint(full, "stage1") != stage_cache.fingerprint(longer_sft, "stage1")


@pytest.mark.slow
def test_second_variant_reuses_the_first_runs_stages(tmp_path):
    cache = tmp_path / "cache"

    def run(variant):
        workdir = tmp_path / variant
        out = subprocess.run(
            [sys.executable, "-m", "gramr2_jax.main",
             f"--config=configs/demo.py:smoke,variant={variant},stage_cache={cache}",
             f"--workdir={workdir}"], cwd=REPO, env=subprocess_env(),
            capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        return workdir, out.stderr

    first, log = run("single_round")
    assert "reused" not in log
    assert sorted(p.name.split("-")[0] for p in cache.iterdir()) == ["data", "stage0", "stage1"]
    second, log = run("label_only")
    for stage in ("data", "stage0", "stage1"):
        assert f"{stage}: reused" in log
    weights = "stage1/train/export/model.safetensors"
    assert (first / weights).read_bytes() == (second / weights).read_bytes()
    one, two = (json.loads((d / "final_metrics.json").read_text()) for d in (first, second))
    assert one["seed_only/test_id/accuracy"] == two["seed_only/test_id/accuracy"]
    assert two["round"] == 2  # label_only ran its own rounds after the shared stages
