"""Logit parity with transformers for every family, and the HF round trip."""

import jax.numpy as jnp
import numpy as np
import pytest

from gramr2_jax.models import from_pretrained, load_config, save_pretrained
from tests.models.hf_fixtures import FAMILY_CONFIGS, hf_logits, make_hf_model, padded_batch

pytestmark = pytest.mark.hf
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _ours(model, tokens, mask):
    return np.asarray(model(jnp.asarray(tokens), input_mask_BT=jnp.asarray(mask)))


@pytest.mark.parametrize("name", sorted(FAMILY_CONFIGS))
@pytest.mark.parametrize("left", [True, False], ids=["leftpad", "rightpad"])
def test_logits_match_transformers_on_padded_batch(name, left, tmp_path):
    hf_model = make_hf_model(name, tmp_path)
    cfg = load_config(tmp_path)
    tokens, mask, positions = padded_batch(cfg.vocab_size, left=left)
    expected = hf_logits(hf_model, tokens, mask, positions)
    got = _ours(from_pretrained(tmp_path), tokens, mask)
    diff = np.abs(got - expected)[mask].max()
    assert diff <= 1e-4, f"{name}: max |diff| {diff}"


@pytest.mark.parametrize("name", sorted(FAMILY_CONFIGS))
def test_save_pretrained_reloads_in_transformers(name, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    hf_model = make_hf_model(name, src)
    model = from_pretrained(src)
    save_pretrained(model, dst)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(
        dst, torch_dtype=torch.float32, attn_implementation="eager").eval()
    tokens, mask, positions = padded_batch(model.config.vocab_size)
    diff = np.abs(hf_logits(reloaded, tokens, mask, positions)
                  - hf_logits(hf_model, tokens, mask, positions))[mask].max()
    assert diff <= 1e-6
    # And our own loader reads what we wrote (scanned layout this time).
    again = _ours(from_pretrained(dst, scan_layers=True), tokens, mask)
    assert np.abs(again - _ours(model, tokens, mask))[mask].max() <= 1e-5


def test_config_styles_and_head_dim(tmp_path):
    make_hf_model("llama2_oldstyle", tmp_path / "old")
    make_hf_model("qwen3", tmp_path / "q3")
    make_hf_model("llama3", tmp_path / "l3")
    old = load_config(tmp_path / "old")
    assert old.rope_theta == 10000.0 and old.rope_scaling is None and old.tie_word_embeddings
    q3 = load_config(tmp_path / "q3")
    assert q3.head_dim == 24 != q3.hidden_size // q3.num_heads and q3.qk_norm
    l3 = load_config(tmp_path / "l3")
    assert l3.rope_scaling.kind == "llama3" and l3.rope_scaling.factor == 8.0


def test_bfloat16_params_stay_close(tmp_path):
    hf_model = make_hf_model("llama3", tmp_path)
    tokens, mask, positions = padded_batch(160)
    expected = hf_logits(hf_model, tokens, mask, positions)
    got = _ours(from_pretrained(tmp_path, dtype=jnp.bfloat16), tokens, mask)
    assert np.abs(got - expected)[mask].max() < 0.05
