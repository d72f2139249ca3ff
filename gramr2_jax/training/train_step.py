"""The train step: a pure function of (graphdef, state, batch), jitted with shardings.

Gradient accumulation runs inside the step as a `lax.scan` over microbatches.
Microbatch j takes rows j, j+k, j+2k, ... of the batch, so every device keeps
its own rows (no resharding) and the union over microbatches is the whole
batch. Losses are sums divided by the unit count of the whole global batch
(see losses.py), so k microbatches give the large-batch loss and gradient.

Non-finite guard: if the loss or the gradient norm is not finite, the update is
not applied (state and step stay as they were) and `finite` is 0 in the
metrics; the trainer stops on it.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from gramr2_jax import sharding as sharding_lib
from gramr2_jax.training.losses import Objective
from gramr2_jax.training.train_state import TrainState

Batch = Mapping[str, jax.Array]
Schedule = Callable[[jax.Array], jax.Array]  # and a pytree: see optimizer.py
MakeTx = Callable[[Schedule], optax.GradientTransformation]
BATCH_AXES = ("activation_batch",)


def _microbatches(batch: Batch, num_micro: int) -> Batch:
    """[B, ...] → [k, B/k, ...] with microbatch j = rows j, j+k, ... (strided)."""
    def split(x):
        if x.shape[0] % num_micro:
            raise ValueError(f"grad_accum_steps: {num_micro} does not divide the batch "
                             f"size {x.shape[0]}")
        x = x.reshape((x.shape[0] // num_micro, num_micro) + x.shape[1:])
        x = sharding_lib.constrain(x, ("activation_batch",) + (None,) * (x.ndim - 1))
        return jnp.swapaxes(x, 0, 1)
    return {k: split(v) for k, v in batch.items()}


def loss_and_grads(graphdef: nnx.GraphDef, params: nnx.State, batch: Batch,
                   objective: Objective, num_micro: int):
    """(mean loss, grads of the mean loss, metric means) over the whole batch."""
    denominator = jnp.maximum(objective.num_units(batch), 1.0)

    def micro_loss(p, micro):
        loss_sum, stats = objective(nnx.merge(graphdef, p), micro)
        return loss_sum / denominator, stats

    grad_fn = jax.value_and_grad(micro_loss, has_aux=True)
    if num_micro == 1:
        (loss, stats), grads = grad_fn(params, batch)
    else:
        micros = _microbatches(batch, num_micro)

        def body(carry, micro):
            (loss, stats), grads = grad_fn(params, micro)
            return jax.tree.map(jnp.add, carry, (loss, stats, grads)), None

        first = jax.tree.map(lambda x: x[0], micros)
        loss_shape, stats_shape = jax.eval_shape(micro_loss, params, first)
        # Accumulate in f32 whatever the param dtype.
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32),
                             (loss_shape, stats_shape, params))
        (loss, stats, grads), _ = jax.lax.scan(body, zeros, micros)
        grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
    stats = {name: value / denominator for name, value in stats.items()}
    stats["units"] = denominator
    return loss, grads, stats


def train_step(graphdef: nnx.GraphDef, state: TrainState, batch: Batch, schedule: Schedule, *,
               objective: Objective, make_tx: MakeTx, num_micro: int
               ) -> tuple[TrainState, dict[str, Any]]:
    tx = make_tx(schedule)
    loss, grads, stats = loss_and_grads(graphdef, state.params, batch, objective, num_micro)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    def update(params, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    # A bad step leaves the state exactly as it was. A cond, not a select of old
    # and new: the select kept the old AdamW moments alive next to the new ones,
    # so XLA copied every moment buffer on every step (~5% of the benchmark step).
    params, opt_state = jax.lax.cond(finite, update, lambda p, o, g: (p, o),
                                     state.params, state.opt_state, grads)
    new_state = TrainState(step=state.step + finite.astype(jnp.int32), params=params,
                           opt_state=opt_state)
    metrics = {"loss": loss, "grad_norm": grad_norm, "learning_rate": schedule(state.step),
               "finite": finite, **stats}
    return new_state, metrics


def batch_spec(global_batch_size: int, mesh: jax.sharding.Mesh, rules=None) -> P:
    """Leading (batch) dimension over the data-parallel mesh axes, the rest replicated."""
    return sharding_lib.logical_to_spec(BATCH_AXES, (global_batch_size,), dict(mesh.shape), rules)


def make_train_step(graphdef: nnx.GraphDef, shardings: TrainState, mesh: jax.sharding.Mesh, *,
                    objective: Objective, make_tx: MakeTx, schedule: Schedule,
                    num_micro: int = 1, rules=None
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, Any]]]:
    """`step(state, batch) → (state, metrics)`; the input state is donated.

    make_tx(schedule) builds the optimizer inside the step (e.g. a partial of
    optimizer.make_optimizer); `schedule` is a pytree (optimizer.WarmupCosine,
    optimizer.Constant) passed to the compiled step as an argument, so steps that
    differ only in their schedule compile to the same program.
    The batch must be global jax.Arrays laid out by `batch_spec` (see
    distributed.host_local_to_global); its sharding is taken from the arrays.
    """
    fn = functools.partial(train_step, graphdef, objective=objective, make_tx=make_tx,
                           num_micro=num_micro)
    jitted = jax.jit(fn, in_shardings=(shardings, None, None),
                     out_shardings=(shardings, None), donate_argnums=0)

    def step(state: TrainState, batch: Batch):
        with jax.set_mesh(mesh), sharding_lib.use_rules(rules):
            return jitted(state, batch, schedule)

    def lower(state: TrainState, batch: Batch) -> jax.stages.Lowered:
        """The step's program, lowered (HLO text, cost and memory analysis)."""
        with jax.set_mesh(mesh), sharding_lib.use_rules(rules):
            return jitted.lower(state, batch, schedule)

    step.lower = lower

    return step
