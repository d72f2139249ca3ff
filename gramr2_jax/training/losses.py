"""Training objectives: SFT token NLL, GRAM-v1 verdict CE with label smoothing, Bradley-Terry.

Every objective returns SUMS over its units (target tokens or examples) plus the
number of units, never means. The train step divides by the unit count of the
whole global batch, so one big batch and k accumulated microbatches give the
same loss and gradient (a mean of microbatch means would weight short
microbatches more).

Batch keys follow gramr2_jax/data/batching.py (right padding).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp

Batch = Mapping[str, jax.Array]
LOSS_KINDS = ("sft", "verdict", "bt")


# ----------------------------------------------------------------------------- math


def token_nll(logits_BTV: jax.Array, targets_BT: jax.Array) -> jax.Array:
    """−log softmax(logits)[target] per position, in float32."""
    logits = logits_BTV.astype(jnp.float32)
    target_logit = jnp.take_along_axis(logits, targets_BT[..., None], axis=-1)[..., 0]
    return jax.nn.logsumexp(logits, axis=-1) - target_logit


def smoothed_binary_ce(logits_B2: jax.Array, labels_B: jax.Array, epsilon: float) -> jax.Array:
    """Cross-entropy over two classes with label smoothing ε (targets 1−ε/2 and ε/2).

    With Δ = logit[label] − logit[other] this equals −log σ(Δ) + (ε/2)·Δ: the
    Bradley-Terry loss on the token margin plus a linear brake on the margin
    (GRAM v1's "regularized ranking loss"; optimum at σ(Δ) = 1 − ε/2).
    """
    log_probs = jax.nn.log_softmax(logits_B2.astype(jnp.float32), axis=-1)
    onehot = jax.nn.one_hot(labels_B, 2, dtype=jnp.float32)
    targets = onehot * (1.0 - epsilon) + epsilon / 2.0
    return -jnp.sum(targets * log_probs, axis=-1)


def bradley_terry(reward_chosen_B: jax.Array, reward_rejected_B: jax.Array) -> jax.Array:
    """−log σ(r_chosen − r_rejected) per pair."""
    return -jax.nn.log_sigmoid((reward_chosen_B - reward_rejected_B).astype(jnp.float32))


# ----------------------------------------------------------------------------- objectives


@dataclasses.dataclass(frozen=True)
class Objective:
    """Which loss to train, with its static settings (hashable: part of the jit key)."""

    kind: str = "sft"
    label_smoothing: float = 0.0  # verdict only
    verdict_token_ids: tuple[int, int] | None = None  # (id of "A", id of "B"); verdict only

    def __post_init__(self):
        if self.kind not in LOSS_KINDS:
            raise ValueError(f"loss: {self.kind!r} is not one of {LOSS_KINDS}")
        if self.kind == "verdict" and (self.verdict_token_ids is None
                                       or len(self.verdict_token_ids) != 2):
            raise ValueError("verdict_token_ids: the verdict loss needs the two token ids (A, B)")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing: must be in [0, 1), got {self.label_smoothing}")

    def num_units(self, batch: Batch) -> jax.Array:
        """Denominator of the mean: target tokens (sft) or real examples (verdict, bt)."""
        if self.kind == "sft":
            return jnp.sum(batch["loss_mask"][:, 1:], dtype=jnp.float32)
        return jnp.sum(batch["example_mask"], dtype=jnp.float32)

    def __call__(self, model: Any, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(sum of per-unit losses, dict of metric sums) for this (micro)batch."""
        if self.kind == "sft":
            return _sft(model, batch)
        if self.kind == "verdict":
            return _verdict(model, batch, self.verdict_token_ids, self.label_smoothing)
        return _bt(model, batch)


def _shift_left(x_BT: jax.Array) -> jax.Array:
    return jnp.concatenate([x_BT[:, 1:], jnp.zeros_like(x_BT[:, :1])], axis=1)


def _sft(model, batch: Batch):
    # Position t predicts token t+1; loss_mask marks the tokens to be predicted.
    # Targets are shifted instead of the logits: slicing [B, T, V] logits costs a copy.
    logits = model(batch["tokens"], input_mask_BT=batch["input_mask"])
    nll = token_nll(logits, _shift_left(batch["tokens"]))
    mask = _shift_left(batch["loss_mask"]).astype(jnp.float32)
    return jnp.sum(nll * mask), {}


def _verdict(model, batch: Batch, verdict_ids: tuple[int, int], epsilon: float):
    # Only the position before the verdict token is projected to the vocabulary.
    hidden_BTD, _ = model.hidden_states(batch["tokens"], input_mask_BT=batch["input_mask"])
    before = jnp.maximum(batch["verdict_positions"] - 1, 0)
    hidden_B1D = jnp.take_along_axis(hidden_BTD, before[:, None, None], axis=1)
    logits_B2 = model.logits(hidden_B1D)[:, 0, jnp.asarray(verdict_ids)]
    labels = jnp.clip(batch["labels"], 0, 1)
    weight = batch["example_mask"].astype(jnp.float32)
    loss = smoothed_binary_ce(logits_B2, labels, epsilon)
    correct = (jnp.argmax(logits_B2, axis=-1) == labels).astype(jnp.float32)
    return jnp.sum(loss * weight), {"accuracy": jnp.sum(correct * weight)}


def _bt(model, batch: Batch):
    # One forward pass over chosen and rejected stacked along the batch.
    tokens = jnp.concatenate([batch["chosen_tokens"], batch["rejected_tokens"]])
    mask = jnp.concatenate([batch["chosen_mask"], batch["rejected_mask"]])
    rewards = model(tokens, input_mask_BT=mask)
    chosen, rejected = jnp.split(rewards, 2)
    weight = batch["example_mask"].astype(jnp.float32)
    correct = (chosen > rejected).astype(jnp.float32)
    return (jnp.sum(bradley_terry(chosen, rejected) * weight),
            {"accuracy": jnp.sum(correct * weight)})
