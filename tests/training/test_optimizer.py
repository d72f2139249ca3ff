"""The learning-rate schedule: optax's warmup-cosine, as a pytree the train step takes."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gramr2_jax.training.optimizer import Constant, learning_rate_schedule

_CALL = jax.jit(lambda schedule, steps: jax.vmap(schedule)(steps))


@pytest.mark.parametrize("peak,warmup,total,end_ratio", list(itertools.product(
    [3e-3, 1e-4, 0.5], [0, 1, 10], [1, 5, 187, 1000], [0.0, 0.1])))
def test_schedule_equals_optax_warmup_cosine(peak, warmup, total, end_ratio):
    reference = optax.warmup_cosine_decay_schedule(
        0.0, peak, warmup, max(total, warmup + 1), peak * end_ratio)
    steps = jnp.arange(-1, total + 20, dtype=jnp.int32)  # before, during and after
    expected = np.asarray(jax.jit(jax.vmap(reference))(steps))
    got = np.asarray(_CALL(learning_rate_schedule(peak, warmup, total, end_ratio), steps))
    # Bit for bit on the CPU today (the reciprocals match XLA's folding of optax's
    # constants); a few ulps allowed, since that folding is XLA's choice.
    np.testing.assert_allclose(got, expected, rtol=3e-7, atol=0)


def test_constant_schedule():
    got = _CALL(Constant(np.float32(0.25)), jnp.arange(4, dtype=jnp.int32))
    np.testing.assert_array_equal(np.asarray(got), np.full(4, 0.25, np.float32))
