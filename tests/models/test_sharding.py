"""Sharded logits equal 1-device logits; big presets shard every large matrix."""

import subprocess
import sys

import numpy as np
import portpicker
import pytest
from flax import nnx

from gramr2_jax import sharding
from gramr2_jax.models import preset
from gramr2_jax.models.hf_io import abstract_model
from tests.conftest import REPO

MESHES = ["1,1,1", "8,1,1", "2,4,1", "2,2,2", "1,2,4"]


def _worker(model_dir, meshes, out, **kw):
    cmd = [sys.executable, str(REPO / "tests/models/mesh_worker.py"), "--model_dir", str(model_dir),
           "--meshes", ";".join(meshes), "--out", str(out)]
    for k, v in kw.items():
        cmd += [f"--{k}", str(v)]
    return cmd


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory):
    pytest.importorskip("torch")
    from tests.models.hf_fixtures import make_hf_model

    path = tmp_path_factory.mktemp("qwen3")
    make_hf_model("qwen3", path)  # kv heads 2, head_dim 24: uneven splits get exercised
    return path


def test_meshes_give_single_device_logits(qwen3_dir, tmp_path):
    subprocess.run(_worker(qwen3_dir, MESHES, tmp_path / "l"), check=True, timeout=300, cwd=REPO)
    reference = np.load(tmp_path / "l_0.npy")
    for i, mesh in enumerate(MESHES[1:], start=1):
        diff = np.abs(np.load(tmp_path / f"l_{i}.npy") - reference).max()
        assert diff <= 1e-5, f"mesh {mesh}: max |diff| {diff}"


@pytest.mark.multihost
def test_two_processes_match_one_process(qwen3_dir, tmp_path):
    port = portpicker.pick_unused_port()
    procs = [subprocess.Popen(_worker(qwen3_dir, ["2,2,2"], tmp_path / "mh", devices=4,
                                      coordinator=f"127.0.0.1:{port}", num_processes=2,
                                      process_id=pid), cwd=REPO)
             for pid in range(2)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0
    subprocess.run(_worker(qwen3_dir, ["2,2,2"], tmp_path / "sh"), check=True, timeout=300, cwd=REPO)
    diff = np.abs(np.load(tmp_path / "mh_0.npy") - np.load(tmp_path / "sh_0.npy")).max()
    assert diff <= 1e-5


@pytest.mark.parametrize("name", ["llama3.1_8b", "qwen3_8b"])
def test_8b_preset_on_64_chips_shards_every_large_matrix(name):
    cfg = preset(name, scan_layers=True)
    state = nnx.state(abstract_model(cfg))  # shapes only, nothing allocated
    mesh_shape = {"data": 1, "fsdp": 16, "tensor": 4}
    for path, var in nnx.to_flat_state(state):
        if var.value.size >= 1 << 20:
            spec = sharding.logical_to_spec(var.get_metadata()["logical_axes"], var.value.shape,
                                            mesh_shape)
            assert any(axis is not None for axis in spec), f"{path} fully replicated: {spec}"
    stats = sharding.param_stats(state, mesh_shape)
    assert stats.replicated_fraction < 1e-3
    assert stats.per_device_bytes < 1.05 * stats.total_bytes / 64
    assert abs(stats.total_params - cfg.num_params()) == 0


def test_mesh_shape_resolution_errors_name_the_field():
    assert sharding.resolve_mesh_shape((-1, 2, 2), 8) == (2, 2, 2)
    with pytest.raises(ValueError, match="mesh.shape"):
        sharding.resolve_mesh_shape((3, -1, 1), 8)
    with pytest.raises(ValueError, match="mesh.shape"):
        sharding.resolve_mesh_shape((-1, -1, 1), 8)
    with pytest.raises(ValueError, match=r"sharding.rules\[0\]"):
        sharding.normalize_rules([["embed", "model"]])
