"""Memory plan: hand-computed parameter bytes, the CLI, refusals that name fields."""

import subprocess
import sys

import pytest

from gramr2_jax import config_lib, plan
from gramr2_jax.models import preset
from tests.conftest import REPO

POD = "configs/gram_r2_pod.py"


def _config(arg):
    return config_lib.load_config_file(REPO / POD, arg)


def test_param_bytes_match_hand_computation():
    # Llama-3.1-8B on v5litepod-64: mesh data=1, fsdp=16, tensor=4. Every matrix
    # splits 64 ways; only the 2L+1 RMSNorm vectors (size D) are replicated.
    p = plan.plan(_config("model=llama3.1_8b,slice=v5litepod-64"))
    d, layers, v, f, kv = 4096, 32, 128_256, 14_336, 8 * 128
    matrices = v * d * 2 + layers * (d * d * 2 + d * kv * 2 + 3 * d * f)
    norms = (2 * layers + 1) * d
    assert matrices + norms == preset("llama3.1_8b").num_params() == 8_030_261_248
    assert p.mesh == {"data": 1, "fsdp": 16, "tensor": 4}
    assert p.params == (matrices // 64 + norms) * 4
    assert p.optimizer == 2 * p.params  # AdamW mu and nu, f32, sharded like the params
    assert p.replicated_fraction == pytest.approx(norms / (matrices + norms))


def test_plan_cli_prints_8b_on_64_chips():
    out = subprocess.run(
        [sys.executable, "-m", "gramr2_jax.plan",
         f"--config={POD}:model=llama3.1_8b,slice=v5litepod-64"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "fsdp=16 × tensor=4" in out.stdout and "params" in out.stdout
    assert "KV cache" in out.stdout and "AdamW" in out.stdout


def test_plan_refuses_a_config_that_does_not_fit_and_names_the_field():
    config = _config("model=llama3.1_8b,slice=v4-32")
    with config.unlocked():
        config.train.grad_accum_steps = 1
        config.train.batch_size = 256
    problems = plan.plan(config).problems()
    assert problems and "train.grad_accum_steps" in problems[0]


def test_validate_names_fields():
    config = _config("model=llama3.1_8b,slice=v5p-64")
    with config.unlocked():
        config.model.remat = "some"
        config.model.causal_blocks = 0
        config.mesh.shape = (2, -1, -1)
    with pytest.raises(ValueError) as e:
        config_lib.validate(config)
    for field in ("model.remat", "model.causal_blocks", "mesh.shape"):
        assert field in str(e.value)
    with pytest.raises(ValueError, match="config arg: unknown key 'modle'"):
        config_lib.parse_arg("modle=x", model="a")
