"""Teacher-forced scoring: log p(continuation | prompt), batched, one forward pass.

Each row is prompt + continuation, left-padded (padding.py), so every
continuation is right-aligned. Token j of a continuation of length c sits at
column T - c + j and is predicted by the hidden state one column earlier, so
logits are computed only for the last `width` ≥ max c predicting columns
(no [B, T, V] buffer over the prompt).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


@dataclasses.dataclass(frozen=True)
class ScoreOutput:
    """total [B] Σ log p over the continuation; token_logprobs[b, :lengths[b]] per token."""

    total: np.ndarray
    token_logprobs: np.ndarray
    lengths: np.ndarray

    @classmethod
    def from_token_logprobs(cls, logp_BW: np.ndarray, lengths_B: np.ndarray) -> "ScoreOutput":
        width = logp_BW.shape[1]
        # Right-aligned → left-aligned, so token j of row b is token_logprobs[b, j].
        per_token = np.zeros_like(logp_BW)
        for row, n in enumerate(lengths_B):
            per_token[row, :n] = logp_BW[row, width - n:]
        return cls(total=per_token.sum(axis=1), token_logprobs=per_token,
                   lengths=np.asarray(lengths_B))


def token_logprobs(graphdef: nnx.GraphDef, params: nnx.State, tokens_BT: jax.Array,
                   mask_BT: jax.Array, cont_lengths_B: jax.Array, width: int) -> jax.Array:
    """[B, width] log p of the last `width` tokens of each row; 0 outside its continuation."""
    model = nnx.merge(graphdef, params)
    t = tokens_BT.shape[1]
    hidden, _ = model.hidden_states(tokens_BT, input_mask_BT=mask_BT)
    logits_BWV = model.logits(hidden[:, t - width - 1:t - 1])
    targets_BW = tokens_BT[:, t - width:]
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits_BWV), targets_BW[..., None],
                               axis=-1)[..., 0]
    in_continuation = jnp.arange(width)[None, :] >= width - cont_lengths_B[:, None]
    return jnp.where(in_continuation, logp, 0.0)
