"""Causal blocks: a forward without a cache skips the key blocks above the diagonal.

The reference is transformers (eager attention over the full [T, T] mask) on
sequences long enough to be split, and our own one-block forward for gradients.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gramr2_jax.models import ModelConfig, Transformer, from_pretrained, load_config
from gramr2_jax.models.transformer import CAUSAL_BLOCK_MIN, causal_block_bounds
from tests.models.hf_fixtures import hf_logits, make_hf_model, padded_batch


@pytest.mark.parametrize("t, max_blocks, expected", [
    (CAUSAL_BLOCK_MIN - 1, 8, [(0, 63)]),
    (CAUSAL_BLOCK_MIN * 2 - 1, 8, [(0, 127)]),
    (128, 8, [(0, 64), (64, 128)]),
    (300, 8, [(0, 75), (75, 150), (150, 225), (225, 300)]),
    (301, 8, [(0, 76), (76, 152), (152, 228), (228, 301)]),
    (4096, 8, [(lo, lo + 512) for lo in range(0, 4096, 512)]),
    (4096, 1, [(0, 4096)]),
])
def test_block_bounds_cover_every_row_once(t, max_blocks, expected):
    assert causal_block_bounds(t, max_blocks) == expected


@pytest.mark.hf
@pytest.mark.parametrize("name", ["llama3", "mistral"])  # mistral: a sliding window as well
@pytest.mark.parametrize("left", [True, False], ids=["leftpad", "rightpad"])
def test_split_forward_matches_transformers(name, left, tmp_path):
    pytest.importorskip("torch")
    hf_model = make_hf_model(name, tmp_path)
    cfg = load_config(tmp_path)
    tokens, mask, positions = padded_batch(cfg.vocab_size, lengths=(200, 131, 170), total=200,
                                           left=left)
    model = from_pretrained(tmp_path)
    assert len(causal_block_bounds(200, model.config.causal_blocks)) == 3
    got = np.asarray(model(jnp.asarray(tokens), input_mask_BT=jnp.asarray(mask)))
    diff = np.abs(got - hf_logits(hf_model, tokens, mask, positions))[mask].max()
    assert diff <= 1e-4, f"{name}: max |diff| {diff}"


@nnx.jit  # the test took 25 s eagerly, 13 s jitted
def _loss_and_grads(model, tokens, mask, segments):
    def loss(model):
        logits = model(tokens, input_mask_BT=mask, segment_ids_BT=segments)
        logp = jax.nn.log_softmax(logits[:, :-1])
        picked = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
        real = mask[:, :-1] & mask[:, 1:]  # a padding row's output is padding
        return -(picked * real).sum() / real.sum(), logits

    (value, logits), grads = nnx.value_and_grad(loss, has_aux=True)(model)
    return value, logits, grads


def test_split_forward_and_gradients_equal_one_block():
    cfg = ModelConfig(family="llama", vocab_size=101, hidden_size=32, num_layers=2, num_heads=4,
                      num_kv_heads=2, head_dim=8, mlp_dim=48, max_position_embeddings=512)
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(3, 101, (3, 260)), jnp.int32)
    mask = np.ones((3, 260), bool)
    mask[0, :40] = False  # left padding
    mask[1, 200:] = False  # right padding
    segments = jnp.asarray(np.where(np.arange(260) < 150, 1, 2)[None].repeat(3, 0))  # packed
    mask = jnp.asarray(mask)
    split = Transformer(cfg, rngs=nnx.Rngs(0))
    whole = Transformer(dataclasses.replace(cfg, causal_blocks=1), rngs=nnx.Rngs(0))
    assert len(causal_block_bounds(260, cfg.causal_blocks)) == 4
    for segs in (None, segments):
        v1, l1, g1 = _loss_and_grads(split, tokens, mask, segs)
        v2, l2, g2 = _loss_and_grads(whole, tokens, mask, segs)
        np.testing.assert_allclose(np.asarray(l1)[np.asarray(mask)],
                                   np.asarray(l2)[np.asarray(mask)], rtol=0, atol=1e-5)
        np.testing.assert_allclose(float(v1), float(v2), rtol=1e-6)
        for a, b in zip(jax.tree.leaves(nnx.to_pure_dict(g1)), jax.tree.leaves(nnx.to_pure_dict(g2))):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_causal_blocks_must_be_positive():
    with pytest.raises(ValueError, match="causal_blocks: must be at least 1"):
        ModelConfig(family="llama", vocab_size=8, hidden_size=8, num_layers=1, num_heads=1,
                    num_kv_heads=1, head_dim=8, mlp_dim=8, causal_blocks=0)
