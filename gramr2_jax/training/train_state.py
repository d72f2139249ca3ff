"""The train state (step, params, optimizer state) and its shardings.

Params are the model's `nnx.State` (f32 by default); the model structure lives
in a graphdef next to it, so the hot loop jits a pure function of arrays.
Optimizer moments mirror the params and take the params' shardings; optimizer
scalars (counts) are replicated.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from gramr2_jax import sharding as sharding_lib


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer updates applied so far
    params: nnx.State
    opt_state: optax.OptState

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "params": self.params, "opt_state": self.opt_state}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainState":
        return cls(step=d["step"], params=d["params"], opt_state=d["opt_state"])


def param_shardings(params: nnx.State, mesh: jax.sharding.Mesh, rules=None):
    """NamedShardings for params from their logical axes (a tree shaped like params)."""
    return sharding_lib.state_shardings(params, mesh, rules)


def create_train_state(model: nnx.Module, tx: optax.GradientTransformation,
                       mesh: jax.sharding.Mesh, rules=None):
    """(graphdef, TrainState, TrainState of NamedShardings) for `model` on `mesh`.

    Params already on the mesh (built with create_sharded_module or loaded with
    from_pretrained(mesh=...)) are not copied; others are moved shard by shard.
    """
    graphdef, params = nnx.split(model)
    shardings = state_shardings_for(params, tx, mesh, rules)
    params = jax.device_put(params, shardings.params)
    with jax.set_mesh(mesh):
        opt_state = jax.jit(tx.init, out_shardings=shardings.opt_state)(params)
    step = jax.device_put(jnp.zeros((), jnp.int32), shardings.step)
    return graphdef, TrainState(step=step, params=params, opt_state=opt_state), shardings


def state_shardings_for(params: nnx.State, tx: optax.GradientTransformation,
                        mesh: jax.sharding.Mesh, rules=None) -> TrainState:
    """TrainState-shaped tree of NamedShardings (params may be abstract)."""
    replicated = NamedSharding(mesh, P())
    p_shardings = param_shardings(params, mesh, rules)
    abstract_opt = jax.eval_shape(tx.init, params)
    opt_shardings = optax.tree_map_params(
        tx, lambda _, s: s, abstract_opt, p_shardings,
        transform_non_params=lambda _: replicated)
    return TrainState(step=replicated, params=p_shardings, opt_state=opt_shardings)


def abstract_train_state(state: TrainState, shardings: TrainState) -> TrainState:
    """ShapeDtypeStructs carrying the target shardings: the restore target."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        state, shardings)
