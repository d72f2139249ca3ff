"""Verdict probabilities recorded during generation (for the judge).

Design: while sampling, each row keeps its last `len(trigger_ids)` tokens
(prompt tail first, then generated tokens). At the first step where they equal
the trigger (e.g. the ids of "<answer>"), the row's raw model logits of the
candidate ids (e.g. "A", "B") are recorded, before sampling that step's token.
`probs` is the softmax over just those candidate logits, i.e.
p(A) / (p(A) + p(B)) under the unmodified model (temperature 1, no top-k/p);
`logprobs` is its log, which keeps what the probabilities round away: in f32,
candidate logits 17 apart already give p exactly 1.0.

This costs no extra forward pass. The trigger must be the ids the model
actually emits (BPE may merge across a boundary, e.g. ">\\n"); a prompt that
already ends with the trigger is recorded at the first generated position.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
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


def logprobs(state: VerdictState) -> jax.Array:
    """[R, C] log-softmax over the candidate logits; NaN where the trigger never came."""
    logp = jax.nn.log_softmax(state.logits_RC, axis=-1)
    return jnp.where(state.found_R[:, None], logp, jnp.nan)


def mean_prob_side(log_odds: Sequence[float]) -> int:
    """Which side of 1/2 the mean of sigmoid(x_i) lies on (+1 above, -1 below, 0 exactly on
    it), for log-odds x_i = log p_i / (1 - p_i), decided without rounding.

    The mean of the probabilities themselves reads exactly 1/2 whenever each is within
    float precision of 0 or 1, e.g. for a judge that names the second response in both
    orders with verdict logits 100 apart, though the two orders' probabilities differ.
    Uses sum_i (sigmoid(x_i) - 1/2) = (n_above - n_below) / 2 - sum_above sigmoid(-x)
    + sum_below sigmoid(x); with as many x above 0 as below, the two small sums are
    compared as logs. Infinite x are allowed (p exactly 0 or 1); NaN is not.
    """
    x = np.asarray(log_odds, np.float64)
    if np.isnan(x).any():
        raise ValueError(f"mean_prob_side: NaN log-odds in {log_odds!r}")
    above, below = x[x > 0], x[x < 0]
    if len(above) != len(below):
        total = ((len(above) - len(below)) / 2 - np.exp(_log_sigmoid(-above)).sum()
                 + np.exp(_log_sigmoid(below)).sum())
        return int(np.sign(total))
    if not len(above):
        return 0
    gained = np.logaddexp.reduce(_log_sigmoid(below))  # log sum_below sigmoid(x)
    lost = np.logaddexp.reduce(_log_sigmoid(-above))  # log sum_above sigmoid(-x)
    return int(gained > lost) - int(gained < lost)


def mean_prob_verdict(log_odds: Sequence[float]) -> str | None:
    """"A" if the mean of sigmoid(x_i) is above 1/2, "B" if below, None exactly on it: a
    judge's tie-break from its samples' log-odds of A (`mean_prob_side`)."""
    return {1: "A", -1: "B", 0: None}[mean_prob_side(log_odds)]


def mean_prob(probs: Sequence[float], log_odds: Sequence[float]) -> float:
    """The mean of `probs`, kept on the side of 1/2 that the exact mean of sigmoid(log_odds)
    lies on (`mean_prob_side`; the log-odds of the same samples). Where rounding put it
    elsewhere (probabilities of exactly 0 and 1 average to 1/2), it is the double nearest
    1/2 on the exact side, or 1/2 itself when the exact mean is 1/2: a comparator's p then
    orders a pair as its verdict does."""
    mean = float(np.mean(np.asarray(probs, np.float64)))
    side = mean_prob_side(log_odds)
    if np.sign(mean - 0.5) == side:
        return mean
    return float(np.nextafter(0.5, side)) if side else 0.5


def vote(verdicts: Sequence[str | None], log_odds_a: Sequence[float]) -> str | None:
    """A judge's verdict from its samples: the majority of the "A" / "B" votes (None is an
    abstain, no vote); a tie between votes goes to the side of 1/2 the samples' mean p(A)
    lies on, decided exactly (`mean_prob_verdict` of their log-odds of A; pass () to leave
    ties undecided); no votes, or a mean of exactly 1/2 -> None."""
    a, b = sum(v == "A" for v in verdicts), sum(v == "B" for v in verdicts)
    if a != b:
        return "A" if a > b else "B"
    return mean_prob_verdict(log_odds_a) if a else None


def log_odds(p: float) -> float:
    """log p / (1 - p): infinite at p = 0 or 1, NaN for NaN."""
    if p == 0.0 or p == 1.0:
        return math.copysign(math.inf, p - 0.5)
    return math.log(p) - math.log1p(-p)


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)
