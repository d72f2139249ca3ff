"""Train step: gradient accumulation equals the large batch; the non-finite guard."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gramr2_jax.data.batching import collate
from gramr2_jax.sharding import make_mesh
from gramr2_jax.training.losses import Objective
from gramr2_jax.training.optimizer import learning_rate_schedule, make_optimizer
from gramr2_jax.training.train_state import create_train_state
from gramr2_jax.training.train_step import make_train_step
from tests.training import tiny


def _setup(num_micro: int, model=None, schedule=None):
    mesh = make_mesh((1, 1, 1))
    schedule = schedule or learning_rate_schedule(1e-2, 1, 10, 0.1)
    make_tx = functools.partial(make_optimizer, weight_decay=0.01, b1=0.9, b2=0.99, eps=1e-8,
                                max_grad_norm=1.0)
    graphdef, state, shardings = create_train_state(model or tiny.tiny_model(0),
                                                    make_tx(schedule), mesh)
    step_fn = make_train_step(graphdef, shardings, mesh, objective=Objective("sft"),
                              make_tx=make_tx, schedule=schedule, num_micro=num_micro)
    return state, step_fn


def _batches():
    # Rows of different lengths: microbatches hold different numbers of target tokens,
    # so a mean of microbatch means would differ from the batch mean.
    rows = tiny.sft_examples(16, seed=5, min_prompt=3, max_prompt=20)
    for r in rows[::3]:
        r["target"] = np.concatenate([r["target"], r["target"]])
    return [{k: jnp.asarray(v) for k, v in collate([tiny.encode_sft(r) for r in rows[i:i + 8]],
                                                    8, (32,)).items()} for i in (0, 8)]


def _train_two_steps(num_micro: int):
    state, step_fn = _setup(num_micro)
    losses = []
    for batch in _batches():
        state, metrics = step_fn(state, batch)
        losses.append(float(metrics["loss"]))
    return losses, jax.device_get(state.params)


def test_grad_accumulation_matches_large_batch():
    losses, params = _train_two_steps(1)
    for num_micro in (2, 4):
        micro_losses, micro_params = _train_two_steps(num_micro)
        np.testing.assert_allclose(micro_losses, losses, rtol=1e-5)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                     micro_params, params)


def test_non_finite_step_leaves_state_unchanged():
    model = tiny.tiny_model(0)
    model.embed.value = model.embed.value.at[1, 0].set(jnp.nan)  # token 1 ends every target
    state, step_fn = _setup(1, model)
    before = jax.device_get((state.params, state.opt_state))
    state, metrics = step_fn(state, _batches()[0])
    assert not bool(metrics["finite"]) and int(state.step) == 0
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b),
                 before, jax.device_get((state.params, state.opt_state)))


def test_state_is_donated():
    state, step_fn = _setup(1)
    old_embed = state.params["embed"].value
    step_fn(state, _batches()[0])
    assert old_embed.is_deleted()


def test_bf16_compute_keeps_f32_params_and_moments():
    model = nnx.eval_shape(lambda: tiny.tiny_model(0, dtype=jnp.bfloat16))
    assert model.config.param_dtype == jnp.float32
    state, step_fn = _setup(1, tiny.tiny_model(0, dtype=jnp.bfloat16))
    state, metrics = step_fn(state, _batches()[0])
    assert np.isfinite(float(metrics["loss"]))
    dtypes = {x.dtype for x in jax.tree.leaves((state.params, state.opt_state))
              if x.ndim > 0}
    assert dtypes == {jnp.dtype(jnp.float32)}


def test_schedules_share_one_compiled_step():
    # The schedule is an argument of the compiled step, not constants in its HLO:
    # stages that differ only in learning rate, warmup and length share one program
    # (and one entry of the persistent compilation cache).
    batch = _batches()[0]
    texts = []
    for schedule in (learning_rate_schedule(1e-2, 1, 10, 0.1),
                     learning_rate_schedule(3e-4, 20, 1000, 0.0)):
        state, step_fn = _setup(1, schedule=schedule)
        texts.append(step_fn.lower(state, batch).as_text())
    assert texts[0] == texts[1]
    state, step_fn = _setup(2)  # a real difference still shows
    assert step_fn.lower(state, batch).as_text() != texts[0]
