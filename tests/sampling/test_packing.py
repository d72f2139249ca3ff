"""Packed prefill: prompts packed several to a row give what the padded batch gives."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gramr2_jax.models import KVCache
from gramr2_jax.sampling import Sampler
from gramr2_jax.sampling.padding import left_pad, pack_prompts, padded_count
from tests.sampling.conftest import MIXED, TINY, full_forward_logits, tiny_model


def test_pack_prompts_places_every_token_once():
    packing = pack_prompts(MIXED, 24, pad_id=0)
    assert packing.tokens_GW.shape == (3, 24)
    tokens, mask = left_pad(MIXED, 24, pad_id=0)
    # Slot (b, s) of the left-padded layout maps to the packed token it holds.
    unpacked = packing.tokens_GW[packing.row_BP, packing.col_BP]
    np.testing.assert_array_equal(unpacked[mask], tokens[mask])
    for b, seq in enumerate(MIXED):
        rows, cols = packing.row_BP[b, 24 - len(seq):], packing.col_BP[b, 24 - len(seq):]
        assert len(set(rows.tolist())) == 1  # one prompt, one row, contiguous columns
        np.testing.assert_array_equal(cols, cols[0] + np.arange(len(seq)))
        np.testing.assert_array_equal(packing.positions_GW[rows, cols], np.arange(len(seq)))
        segment = packing.segments_GW[rows[0], cols[0]]
        assert segment > 0 and (packing.segments_GW[rows[0]] == segment).sum() == len(seq)
    assert (packing.segments_GW > 0).sum() == sum(map(len, MIXED))  # nothing twice
    assert (packing.tokens_GW[packing.segments_GW == 0] == 0).all()


def test_pack_prompts_rows_and_refusals():
    assert pack_prompts(MIXED, 48, pad_id=0, prompt_width=24).tokens_GW.shape == (2, 48)
    assert pack_prompts(MIXED, 24, pad_id=0, row_multiple=2).tokens_GW.shape == (4, 24)
    assert pack_prompts(MIXED, 24, pad_id=0, row_multiple=6) is None  # 6 rows: no saving
    assert pack_prompts([[1] * 20, [1] * 20], 24, pad_id=0) is None  # nothing fits beside
    with pytest.raises(ValueError, match=r"lengths must be in \[1, 24\]"):
        pack_prompts([[1] * 25], 24, pad_id=0)
    with pytest.raises(ValueError, match="lengths must be"):
        pack_prompts([[]], 24, pad_id=0)


@pytest.mark.parametrize("window", [None, 4])
def test_segment_ids_forward_equals_separate_forwards(window):
    model = tiny_model(config=TINY.replace(sliding_window=window))
    packing = pack_prompts(MIXED, 48, pad_id=0, prompt_width=24)
    logits = nnx.jit(lambda m, t, p, s: m(t, positions_BT=p, input_mask_BT=s > 0,
                                          segment_ids_BT=s))(
        model, *(jnp.asarray(x) for x in (packing.tokens_GW, packing.positions_GW,
                                          packing.segments_GW)))
    for b, expected in enumerate(full_forward_logits(model, MIXED)):
        n = len(MIXED[b])
        got = np.asarray(logits)[packing.row_BP[b, -n:], packing.col_BP[b, -n:]]
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_segment_ids_need_the_tokens_as_keys(model):
    tokens = jnp.ones((1, 4), jnp.int32)
    with pytest.raises(ValueError, match="segment_ids need keys"):
        model.hidden_states(tokens, segment_ids_BT=tokens, cache=KVCache.zeros(model.config, 1, 8))


def test_cache_gather(model):
    cache = KVCache.zeros(model.config, 2, 4)
    slot = jnp.arange(8, dtype=jnp.float32).reshape(2, 1, 1, 4)  # value = row * 4 + slot
    cache = cache.map_arrays(lambda k: k + slot, lambda v: v + jnp.swapaxes(slot, -1, -2))
    row, col = np.array([[1, 1, 0], [0, 0, 0]]), np.array([[3, 0, 2], [1, 2, 3]])
    mask = np.array([[True, True, True], [False, True, True]])
    out = cache.gather(jnp.asarray(row), jnp.asarray(col), jnp.asarray(mask))
    assert out.length == 3 and int(out.end) == 3 and out.mask.tolist() == mask.tolist()
    np.testing.assert_array_equal(out.k[0][:, 0, 0], row * 4 + col)  # k [B, K, H, S]
    np.testing.assert_array_equal(out.v[1][:, 0, :, 0], row * 4 + col)  # v [B, K, S, H]
    with pytest.raises(ValueError, match="must have one shape"):
        cache.gather(jnp.asarray(row), jnp.asarray(col), jnp.asarray(mask[:, :2]))


@pytest.mark.parametrize("window,prefix,scan", [(None, "shared", False), (None, "repeat", False),
                                                (4, "shared", False), (None, "shared", True)],
                         ids=["shared", "repeat", "sliding4", "scanned"])
def test_packed_prefill_gives_the_same_tokens(window, prefix, scan):
    model = tiny_model(config=TINY.replace(sliding_window=window, scan_layers=scan))
    packed, padded = Sampler(model), Sampler(model, pack_prompts=False)
    assert packed._packing(*left_pad(MIXED, 24, pad_id=0)) is not None  # it does pack
    kw = dict(max_new_tokens=24, temperature=1.0, seed=6, num_samples=2, prefix=prefix,
              stop_tokens=())
    a, b = packed.generate(MIXED, **kw), padded.generate(MIXED, **kw)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    # Other rows share the matmuls, so the sums run in another order: float rounding.
    np.testing.assert_allclose(a.logprobs, b.logprobs, atol=5e-5, rtol=0)


def test_packing_picks_the_fewest_tokens(model):
    """Rows of 1, 1.5 or 2 buckets, whichever computes the fewest tokens (the narrowest on
    a tie); None if none saves rows."""
    sampler = Sampler(model)
    packed = sampler._packing(*left_pad(MIXED, 24, pad_id=0))
    assert packed.tokens_GW.shape == (3, 24)  # 72 tokens; 2 × 36 = 72 too, 2 × 48 = 96
    tens = [[1] + list(range(10, 19))] * 8  # 8 × 10 tokens, bucket 16: one per row of 16
    packed = sampler._packing(*left_pad(tens, 16, pad_id=0))
    assert packed.tokens_GW.shape == (4, 24)  # two per row of 24; 3 rows × 32 = 96 too
    # 10 × 9 tokens, rows rounded to a multiple of 2: rows of 24 hold two (5 → 6 rows,
    # 144 tokens), rows of 32 three (4 rows, 128 tokens).
    packed = sampler._packing(*left_pad([[1] * 9] * 10, 16, pad_id=0))
    assert packed.tokens_GW.shape == (4, 32)
    assert sampler._packing(*left_pad([[1] * 16] * 4, 16, pad_id=0)) is None


@pytest.mark.parametrize("num, cap, expected", [
    (1, 64, 1), (5, 64, 8), (14, 64, 16), (33, 64, 64), (64, 64, 64),
    (65, 64, 65), (100, 64, 100),  # a single call above the cap runs as it is
    (3, 4, 4), (7, 2, 7)])
def test_padded_count_is_a_power_of_two_up_to_the_cap(num, cap, expected):
    assert padded_count(num, cap) == expected


def test_padded_count_needs_a_prompt():
    with pytest.raises(ValueError, match="num: expected at least one prompt"):
        padded_count(0, 64)
