"""The CPU-fast selection helpers equal the jax.lax / jnp reference exactly."""

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
