"""The cached decode path equals uncached forward passes; stop-token handling."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gramr2_jax.models import KVCache
from gramr2_jax.sampling import left_pad
from tests.sampling.conftest import (
    PROMPTS,
    TINY,
    full_forward_logits,
    full_forward_logprobs,
    tiny_model,
)

LONG_PROMPTS = [PROMPTS[0] + PROMPTS[0][1:]] + PROMPTS[1:]  # 37 tokens: bucket 48


# The pipeline's prefix mode in the default run; the other two (9-15 s each on a 2-core
# CPU) with the slow tests.
SHARED_FIRST = ["shared", pytest.param("repeat", marks=pytest.mark.slow),
                pytest.param("unshared", marks=pytest.mark.slow)]


@pytest.mark.parametrize("scan_layers", [False, True], ids=["unrolled", "scanned"])
def test_cached_decode_logits_equal_full_forward(model, scan_layers):
    """Left-padded prefill + one-token steps (as the sampler runs them) vs full passes.

    Unrolled layers keep one cache array per layer, scanned layers one stacked array."""
    if scan_layers:
        model = tiny_model(config=TINY.replace(scan_layers=True))
    steps = 6
    tokens, mask = left_pad(PROMPTS, 32, pad_id=0)
    cache = KVCache.zeros(model.config, len(PROMPTS), 32 + steps)
    step_fn = nnx.jit(lambda m, t, p, c: m(t, positions_BT=p, cache=c))
    logits, cache = nnx.jit(lambda m, t, k, c: m(t, input_mask_BT=k, cache=c))(
        model, jnp.asarray(tokens), jnp.asarray(mask), cache)
    seqs = [list(p) for p in PROMPTS]
    step_logits = [logits[:, -1]]
    rng = np.random.default_rng(0)
    for _ in range(steps):
        next_tokens = rng.integers(3, model.config.vocab_size, len(PROMPTS))
        for seq, t in zip(seqs, next_tokens):
            seq.append(int(t))
        logits, cache = step_fn(model, jnp.asarray(next_tokens[:, None], jnp.int32),
                                cache.num_tokens()[:, None], cache)
        step_logits.append(logits[:, 0])
    for row, full in enumerate(full_forward_logits(model, seqs)):
        for i, cached in enumerate(step_logits):
            position = len(PROMPTS[row]) - 1 + i
            np.testing.assert_allclose(cached[row], full[position], atol=1e-4, rtol=0)


@pytest.mark.parametrize("window,scan_layers", [(None, False), (4, False), (None, True)],
                         ids=["full", "sliding4", "scanned"])
def test_shared_prefix_attention_equals_full_forward(window, scan_layers):
    """Rows attending to one shared prompt cache (two-cache path) vs full passes."""
    model = tiny_model(config=TINY.replace(sliding_window=window, scan_layers=scan_layers))
    prompts, rows_per_prompt, steps = [PROMPTS[2], PROMPTS[1]], 3, 5
    tokens, mask = left_pad(prompts, 8, pad_id=0)
    prefix = KVCache.zeros(model.config, len(prompts), 8)
    _, prefix = nnx.jit(lambda m, t, k, c: m(t, input_mask_BT=k, cache=c))(
        model, jnp.asarray(tokens), jnp.asarray(mask), prefix)
    rows = len(prompts) * rows_per_prompt
    own = KVCache.zeros(model.config, rows, steps)
    step_fn = nnx.jit(lambda m, t, c, p: m(t, cache=c, prefix=p))
    seqs = [list(prompts[r // rows_per_prompt]) for r in range(rows)]
    rng = np.random.default_rng(1)
    step_logits = []
    for _ in range(steps):
        next_tokens = rng.integers(3, model.config.vocab_size, rows)
        for seq, t in zip(seqs, next_tokens):
            seq.append(int(t))
        logits, own = step_fn(model, jnp.asarray(next_tokens[:, None], jnp.int32), own, prefix)
        step_logits.append(logits[:, 0])
    for row, full in enumerate(full_forward_logits(model, seqs)):
        start = len(prompts[row // rows_per_prompt])
        for i, cached in enumerate(step_logits):
            np.testing.assert_allclose(cached[row], full[start + i], atol=1e-4, rtol=0)


@pytest.mark.parametrize("window,prefix", [(None, "shared"), (4, "shared"), (4, "unshared")],
                         ids=["full", "sliding4", "sliding4-unshared"])
def test_generated_logprobs_equal_full_forward(model, window, prefix):
    """Through the sampler: prompt bucket 24 (front-padded to 32 slots), one decode loop."""
    from gramr2_jax.sampling import Sampler

    if window is not None:
        model = tiny_model(config=TINY.replace(sliding_window=window))
    out = Sampler(model).generate(PROMPTS, max_new_tokens=10, temperature=1.0, seed=3,
                                  stop_tokens=(), prefix=prefix)
    assert out.tokens.shape == (3, 10) and (out.lengths == 10).all()
    seqs = [list(p) + out.tokens[row].tolist() for row, p in enumerate(PROMPTS)]
    for row, expected in enumerate(full_forward_logprobs(model, seqs)):
        np.testing.assert_allclose(out.logprobs[row], expected[len(PROMPTS[row]) - 1:],
                                   atol=1e-4)


def test_stop_token_masks_the_rest(sampler):
    greedy = sampler.generate(PROMPTS[:1], max_new_tokens=8, temperature=0, stop_tokens=())
    stop = int(greedy.tokens[0, 3])
    first = greedy.tokens[0].tolist().index(stop)  # the stop may occur earlier too
    out = sampler.generate(PROMPTS[:1], max_new_tokens=8, temperature=0, stop_tokens=[stop])
    assert out.stopped[0] and out.lengths[0] == first + 1
    assert out.tokens[0, :first + 1].tolist() == greedy.tokens[0, :first + 1].tolist()
    assert (out.tokens[0, first + 1:] == sampler.pad_id).all()
    assert (out.logprobs[0, first + 1:] == 0).all() and (out.logprobs[0, :first + 1] < 0).all()


def test_fixed_cache_length_stops_when_full(model):
    from gramr2_jax.sampling import Sampler

    small = Sampler(model, cache_length=16 + 5)  # prompt bucket 16, room for 5 decode steps
    out = small.generate([[1, 4, 6]], max_new_tokens=20, temperature=0, stop_tokens=())
    assert out.lengths[0] == 6 and not out.stopped[0]  # 1 from prefill + 5 cached steps
    assert (out.tokens[0, 6:] == small.pad_id).all()


def test_segment_lengths():
    from gramr2_jax.sampling.decode import segment_lengths

    assert segment_lengths(0, 64, 3) == (16, 32, 64)
    assert segment_lengths(48, 112, 3) == (64, 80, 112)  # the prompt's slots stay
    assert segment_lengths(0, 63, 3) == (16, 32, 63)  # halves round up
    assert segment_lengths(0, 40, 3) == (20, 40)  # under 16 new slots: no loop
    assert segment_lengths(0, 64, 1) == (64,)


def test_cache_layout():
    from gramr2_jax.sampling.decode import cache_layout

    # The benchmark's bucket 48 with 64 new tokens: 16 aligning slots before the prompt's.
    assert cache_layout(True, 48, 112, 3, 32) == (16, 48, (16, 32, 64))  # prefix 48 + 16
    assert cache_layout(False, 48, 112, 3, 32) == (16, 64, (80, 96, 128))  # 48 + 16 + new
    assert cache_layout(False, 48, 112, 3, 1) == (0, 64, (64, 80, 112))  # not aligned
    assert cache_layout(False, 64, 128, 3, 32) == (0, 80, (80, 96, 128))  # already aligned
    assert cache_layout(True, 16, 21, 3, 32) == (16, 16, (5,))  # a fixed cache: 5 new slots


def test_cache_pad_front_and_grow(model):
    cache = KVCache.zeros(model.config, 2, 3).replace(mask=jnp.ones((2, 3), bool),
                                                      end=jnp.int32(3))
    cache = cache.map_arrays(lambda k: k + 1, lambda v: v + 2)
    padded = cache.pad_front(2).grow(6)
    assert padded.length == 6 and int(padded.end) == 5
    assert padded.mask.tolist() == [[False, False, True, True, True, False]] * 2
    k, v = padded.k[0], padded.v[0]  # k [B, K, H, S], v [B, K, S, H]
    assert (k[..., 2:5] == 1).all() and (k[..., :2] == 0).all() and (k[..., 5:] == 0).all()
    assert (v[:, :, 2:5] == 2).all() and (v[:, :, :2] == 0).all() and (v[:, :, 5:] == 0).all()
    with pytest.raises(ValueError, match="grow: 5 slots is less"):
        padded.grow(5)
    with pytest.raises(ValueError, match="pad_front: -1"):
        cache.pad_front(-1)


@pytest.mark.parametrize("prefix", ["shared", "repeat", "unshared"])
def test_aligned_prompt_slots_give_the_same_tokens(model, prefix):
    """The prompt's cache front-padded from 48 to 64 slots (the default) or not at all:
    the same tokens; logprobs equal up to float rounding (sums in another order)."""
    from gramr2_jax.sampling import Sampler

    prompts = LONG_PROMPTS
    kw = dict(max_new_tokens=24, temperature=1.0, seed=2, num_samples=2, prefix=prefix,
              stop_tokens=())
    a = Sampler(model, cache_slot_multiple=1).generate(prompts, **kw)
    b = Sampler(model).generate(prompts, **kw)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("prefix", SHARED_FIRST)
def test_growing_cache_gives_the_same_tokens(model, prefix):
    """Decoding in three loops over a doubling cache = one loop over the full cache:
    the same tokens, stop handling and logprobs (that equal a full forward pass)."""
    from gramr2_jax.sampling import Sampler

    kw = dict(max_new_tokens=64, temperature=1.0, seed=5, num_samples=2, prefix=prefix)
    one, three = Sampler(model, decode_segments=1), Sampler(model, decode_segments=3)
    free = one.generate(PROMPTS, stop_tokens=(), **kw)
    # A token that some row samples first after step 40 (in the third loop).
    stop = next(int(t) for row in free.tokens for i, t in enumerate(row)
                if i > 40 and row.tolist().index(t) == i)
    for stop_tokens in [(), (stop,)]:
        a = one.generate(PROMPTS, stop_tokens=stop_tokens, **kw)
        b = three.generate(PROMPTS, stop_tokens=stop_tokens, **kw)
        np.testing.assert_array_equal(a.tokens, b.tokens)
        np.testing.assert_array_equal(a.lengths, b.lengths)
        np.testing.assert_array_equal(a.stopped, b.stopped)
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5, rtol=0)
    assert (b.stopped & (b.lengths > 40)).any()  # a row stopped in the third loop
    seqs = [list(PROMPTS[p]) + b.tokens[r, :b.lengths[r]].tolist()
            for r, p in enumerate(b.prompt_index)]
    for r, expected in enumerate(full_forward_logprobs(model, seqs)):
        start = len(PROMPTS[b.prompt_index[r]]) - 1
        np.testing.assert_allclose(b.logprobs[r, :b.lengths[r]], expected[start:], atol=1e-4)


@pytest.mark.parametrize("prefix", SHARED_FIRST)
def test_scanned_layers_sample_the_unrolled_tokens(model, prefix, tmp_path):
    """The same weights with scanned layers (one stacked cache array, written at a traced
    layer index): aligned prompt slots, three decode loops, the unrolled model's tokens."""
    from gramr2_jax.models import from_pretrained, save_pretrained
    from gramr2_jax.sampling import Sampler

    save_pretrained(model, tmp_path)
    scanned = from_pretrained(tmp_path, scan_layers=True)
    assert scanned.config.scan_layers
    prompts = LONG_PROMPTS
    kw = dict(max_new_tokens=64, temperature=1.0, seed=4, num_samples=2, prefix=prefix,
              stop_tokens=())
    a = Sampler(model).generate(prompts, **kw)
    b = Sampler(scanned).generate(prompts, **kw)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5, rtol=0)


def test_growing_cache_stops_when_full(model):
    """A fixed cache_length that fills up in the last of three loops."""
    from gramr2_jax.sampling import Sampler

    small = Sampler(model, cache_length=16 + 40, decode_segments=3)  # loops of 20, 40 slots
    out = small.generate([[1, 4, 6]], max_new_tokens=60, temperature=0, stop_tokens=())
    assert out.lengths[0] == 41 and not out.stopped[0]  # 1 from prefill + 40 cached steps
    ref = Sampler(model, decode_segments=1).generate([[1, 4, 6]], max_new_tokens=41,
                                                     temperature=0, stop_tokens=())
    np.testing.assert_array_equal(out.tokens[0, :41], ref.tokens[0])
