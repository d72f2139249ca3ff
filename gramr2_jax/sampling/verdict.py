"""Verdict probabilities recorded during generation (for the judge).

Design: while sampling, each row keeps its last `len(trigger_ids)` tokens
(prompt tail first, then generated tokens). At the first step where they equal
the trigger (e.g. the ids of "<answer>"), the row's raw model logits of the
candidate ids (e.g. "A", "B") are recorded, before sampling that step's token.
`probs` is the softmax over just those candidate logits, i.e.
p(A) / (p(A) + p(B)) under the unmodified model (temperature 1, no top-k/p).

This costs no extra forward pass. The trigger must be the ids the model
actually emits (BPE may merge across a boundary, e.g. ">\\n"); a prompt that
already ends with the trigger is recorded at the first generated position.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

_NO_TOKEN = -1  # window filler before a row has that many tokens


@dataclasses.dataclass(frozen=True)
class Verdict:
    trigger_ids: tuple[int, ...]
    candidate_ids: tuple[int, ...]

    def __post_init__(self):
        if not self.trigger_ids:
            raise ValueError("Verdict.trigger_ids: must not be empty")
        if len(self.candidate_ids) < 2:
            raise ValueError("Verdict.candidate_ids: need at least two candidates")
        object.__setattr__(self, "trigger_ids", tuple(int(t) for t in self.trigger_ids))
        object.__setattr__(self, "candidate_ids", tuple(int(t) for t in self.candidate_ids))


@struct.dataclass
class VerdictState:
    window_RT: jax.Array  # [R, T] last T tokens of each row
    found_R: jax.Array  # [R] bool, the trigger has been seen (logits recorded)
    logits_RC: jax.Array  # [R, C] f32 candidate logits at the first trigger


def init_state(verdict: Verdict, tokens_RP: jax.Array, mask_RP: jax.Array) -> VerdictState:
    """Window = the tail of each (left-padded) prompt."""
    t = len(verdict.trigger_ids)
    tail = jnp.where(mask_RP, tokens_RP, _NO_TOKEN)[:, -t:]
    if tail.shape[1] < t:
        tail = jnp.pad(tail, ((0, 0), (t - tail.shape[1], 0)), constant_values=_NO_TOKEN)
    rows = tokens_RP.shape[0]
    return VerdictState(window_RT=tail.astype(jnp.int32), found_R=jnp.zeros((rows,), bool),
                        logits_RC=jnp.zeros((rows, len(verdict.candidate_ids)), jnp.float32))


def observe(verdict: Verdict, state: VerdictState, logits_RV: jax.Array,
            active_R: jax.Array) -> VerdictState:
    """Records candidate logits for rows whose window equals the trigger."""
    trigger = jnp.asarray(verdict.trigger_ids, jnp.int32)
    hit = active_R & ~state.found_R & jnp.all(state.window_RT == trigger, axis=1)
    candidates = logits_RV[:, jnp.asarray(verdict.candidate_ids)]
    return state.replace(found_R=state.found_R | hit,
                         logits_RC=jnp.where(hit[:, None], candidates, state.logits_RC))


def push(state: VerdictState, token_R: jax.Array) -> VerdictState:
    window = jnp.concatenate([state.window_RT[:, 1:], token_R[:, None]], axis=1)
    return state.replace(window_RT=window)


def probs(state: VerdictState) -> jax.Array:
    """[R, C] softmax over the candidate logits; NaN where the trigger never came."""
    p = jax.nn.softmax(state.logits_RC, axis=-1)
    return jnp.where(state.found_R[:, None], p, jnp.nan)
