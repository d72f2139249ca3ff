"""Discriminative reward model for the Bradley-Terry baseline: transformer + scalar head."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from gramr2_jax.models import Transformer


class RewardHead(nnx.Module):
    """Linear D → 1, read at the last real token (f32: a scalar per sequence is cheap)."""

    def __init__(self, hidden_size: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(
            0.02 * jax.random.normal(rngs.params(), (hidden_size,), jnp.float32),
            logical_axes=("embed",))
        self.bias = nnx.Param(jnp.zeros((), jnp.float32), logical_axes=())

    def __call__(self, hidden_BTD: jax.Array, input_mask_BT: jax.Array) -> jax.Array:
        # Right padding: the last real token sits at (number of real tokens − 1).
        last_B = jnp.maximum(jnp.sum(input_mask_BT, axis=1, dtype=jnp.int32) - 1, 0)
        hidden_BD = jnp.take_along_axis(hidden_BTD, last_B[:, None, None], axis=1)[:, 0]
        return hidden_BD.astype(jnp.float32) @ self.kernel.value + self.bias.value


class RewardModel(nnx.Module):
    """`model(tokens_BT, input_mask_BT=...)` → rewards_B (float32)."""

    def __init__(self, backbone: Transformer, *, rngs: nnx.Rngs):
        self.backbone = backbone
        self.head = RewardHead(backbone.config.hidden_size, rngs=rngs)

    @property
    def config(self):
        return self.backbone.config

    def __call__(self, tokens_BT, *, input_mask_BT=None) -> jax.Array:
        if input_mask_BT is None:
            input_mask_BT = jnp.ones(tokens_BT.shape, bool)
        hidden, _ = self.backbone.hidden_states(tokens_BT, input_mask_BT=input_mask_BT)
        return self.head(hidden, input_mask_BT)
