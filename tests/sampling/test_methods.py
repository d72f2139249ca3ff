"""The CPU-fast selection helpers equal the jax.lax / jnp reference (exactly, or in distribution)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gramr2_jax.sampling import methods


@pytest.mark.parametrize("vocab,k", [(32000, 50), (1000, 7), (300, 50), (129, 1)])
def test_top_k_equals_lax_top_k_with_ties(vocab, k):
    rng = np.random.default_rng(vocab + k)
    # Few distinct values: many ties inside and across blocks, and at the k-th place.
    for levels in (3, 40, None):
        x = rng.normal(size=(4, vocab)) if levels is None else rng.integers(0, levels, (4, vocab))
        x = jnp.asarray(x, jnp.float32)
        want_values, want_ids = jax.lax.top_k(x, k)
        values, ids = jax.jit(jax.vmap(lambda row: methods.top_k(row, k)))(x)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_array_equal(values, want_values)


def test_top_k_with_infinities():
    x = jnp.full((32000,), -jnp.inf).at[jnp.array([5, 700, 31999])].set(
        jnp.array([1.0, 3.0, 2.0]))
    values, ids = methods.top_k(x, 5)
    want_values, want_ids = jax.lax.top_k(x, 5)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(ids[:3], [700, 31999, 5])
    np.testing.assert_array_equal(values, want_values)


def test_argmax_is_first_maximum():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, 5, (16, 3000)), jnp.float32)
    np.testing.assert_array_equal(jax.vmap(methods.argmax)(x), jnp.argmax(x, axis=-1))


@pytest.mark.parametrize("vocab", [1037, 200])  # two-stage (with a partial last block); one-stage
def test_categorical_draws_follow_softmax(vocab):
    rng = np.random.default_rng(vocab)
    x = rng.normal(size=vocab) * 1.5
    x[rng.choice(vocab, vocab // 10, replace=False)] = -np.inf  # never drawn
    x[vocab - 1] = 4.0  # a likely token in the last (partial) block
    x = jnp.asarray(x, jnp.float32)
    p = np.asarray(jax.nn.softmax(x), np.float64)
    n = 60000
    keys = jax.random.split(jax.random.key(vocab), n)
    draws = np.asarray(jax.jit(jax.vmap(methods.categorical, in_axes=(0, None)))(keys, x))
    assert draws.min() >= 0 and draws.max() < vocab and (p[draws] > 0).all()
    freq = np.bincount(draws, minlength=vocab) / n
    sigma = np.sqrt(p * (1 - p) / n)
    top = np.argsort(-p)[:40]  # each likely token, the last-block one included
    assert vocab - 1 in top
    np.testing.assert_array_less(np.abs(freq[top] - p[top]), 5 * sigma[top] + 1e-4)
    # Block masses (the first stage) and the chi-square over all drawable tokens.
    blocks = np.arange(vocab) // 32
    block_p, block_f = np.bincount(blocks, p), np.bincount(blocks, freq)
    np.testing.assert_array_less(np.abs(block_f - block_p),
                                 5 * np.sqrt(block_p * (1 - block_p) / n) + 1e-4)
    live = p > 0
    chi2 = n * ((freq[live] - p[live]) ** 2 / p[live]).sum()
    dof = live.sum() - 1
    assert chi2 < dof + 6 * np.sqrt(2 * dof), (chi2, dof)


def test_categorical_is_jax_categorical_on_small_vocabularies():
    # Up to 32 blocks (1024 entries) it is one Gumbel-max: the very draws of jax.random.categorical.
    x = jnp.asarray(np.random.default_rng(0).normal(size=(512,)), jnp.float32)
    keys = jax.random.split(jax.random.key(3), 2000)
    ours = jax.jit(jax.vmap(methods.categorical, in_axes=(0, None)))(keys, x)
    theirs = jax.jit(jax.vmap(jax.random.categorical, in_axes=(0, None)))(keys, x)
    np.testing.assert_array_equal(ours, theirs)
