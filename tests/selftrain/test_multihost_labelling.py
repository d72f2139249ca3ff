"""Labelling on 2 JAX processes (gloo on 127.0.0.1) writes the same pseudo-label set as 1."""

import json
import subprocess
import sys

import portpicker
import pytest

from gramr2_jax import synthetic
from gramr2_jax.selftrain import artifacts
from tests.conftest import REPO

pytestmark = [pytest.mark.multihost, pytest.mark.slow]  # ~1-4 min: three JAX processes


def _cmd(judge_dir, pool, labels, out, **kw):
    cmd = [sys.executable, str(REPO / "tests/selftrain/label_worker.py"), "--judge_dir",
           str(judge_dir), "--pool", str(pool), "--labels", str(labels), "--out", str(out)]
    return cmd + [f"--{k}={v}" for k, v in kw.items()]


def test_two_process_labelling_equals_one_process(tmp_path):
    pytest.importorskip("torch")
    from tests.downstream.judge_fixtures import make_judge_dir

    judge_dir = make_judge_dir(tmp_path / "judge")
    pairs = synthetic.make_split(["arithmetic", "logic"], 10, 0, seed=0)
    pool = tmp_path / "pool.jsonl"
    artifacts.write_jsonl(pool, synthetic.to_unlabelled(pairs, seed=0))

    subprocess.run(_cmd(judge_dir, pool, tmp_path / "one", tmp_path / "one.json"),
                   check=True, timeout=300, cwd=REPO)
    port = portpicker.pick_unused_port()
    procs = [subprocess.Popen(_cmd(judge_dir, pool, tmp_path / "two", tmp_path / "two.json",
                                   coordinator=f"127.0.0.1:{port}", num_processes=2,
                                   process_id=pid), cwd=REPO) for pid in range(2)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0
    # 10 pairs in shards of 3: 4 shards, host 0 wrote 0 and 2, host 1 wrote 1 and 3.
    assert len(list((tmp_path / "two").glob("shard_*.jsonl"))) == 4
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert [r["pair_id"] for r in one] == [p["id"] for p in pairs]
    assert one == two
    assert all(len(r["original"]) == 2 and len(r["swapped"]) == 2 for r in one)
