"""Sampling methods: small frozen pytree dataclasses that pick one token per row.

Float settings (temperature, top_p) are pytree *leaves*, so they are traced:
changing them reuses the compiled sampler. Integer sizes (top_k) are static
because they fix array shapes; changing top_k recompiles.

Each method's `sample(key, logits_V)` works on ONE row; the sampler vmaps it
with a per-row key, so a row's draw never depends on the rest of the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

_NEG_INF = -jnp.inf


@struct.dataclass
class Greedy:
    """Argmax (temperature 0)."""

    def sample(self, key: jax.Array, logits_V: jax.Array) -> jax.Array:
        del key
        return jnp.argmax(logits_V).astype(jnp.int32)


@struct.dataclass
class Temperature:
    """Sample from softmax(logits / temperature) over the full vocabulary."""

    temperature: float = 1.0

    def sample(self, key: jax.Array, logits_V: jax.Array) -> jax.Array:
        return jax.random.categorical(key, logits_V / self.temperature).astype(jnp.int32)


@struct.dataclass
class TopK:
    """Sample among the k most likely tokens (then temperature)."""

    k: int = struct.field(pytree_node=False, default=50)
    temperature: float = 1.0

    def sample(self, key: jax.Array, logits_V: jax.Array) -> jax.Array:
        values_K, ids_K = jax.lax.top_k(logits_V, self.k)
        choice = jax.random.categorical(key, values_K / self.temperature)
        return ids_K[choice].astype(jnp.int32)


def _nucleus_mask(sorted_logits: jax.Array, top_p: jax.Array) -> jax.Array:
    """Keeps the smallest prefix (of descending logits) whose mass reaches top_p."""
    probs = jax.nn.softmax(sorted_logits)
    mass_before = jnp.cumsum(probs) - probs
    return mass_before < top_p  # the first token always stays


@struct.dataclass
class TopP:
    """Nucleus sampling after temperature (HF order: temperature → top-k → top-p).

    With `top_k` set, the nucleus is found inside the top-k (one cheap top_k
    instead of a full-vocabulary sort); with top_k=None it sorts the vocabulary.
    """

    top_p: float = 0.95
    temperature: float = 1.0
    top_k: int | None = struct.field(pytree_node=False, default=None)

    def sample(self, key: jax.Array, logits_V: jax.Array) -> jax.Array:
        k = logits_V.shape[-1] if self.top_k is None else self.top_k
        values_K, ids_K = jax.lax.top_k(logits_V / self.temperature, k)
        values_K = jnp.where(_nucleus_mask(values_K, self.top_p), values_K, _NEG_INF)
        choice = jax.random.categorical(key, values_K)
        return ids_K[choice].astype(jnp.int32)


Method = Greedy | Temperature | TopK | TopP


def make_method(temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None) -> Method:
    """The method for HF-style settings; temperature 0 means greedy."""
    if temperature < 0:
        raise ValueError(f"temperature: must be >= 0, got {temperature}")
    if top_k is not None and top_k <= 0:
        raise ValueError(f"top_k: must be positive, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p: must be in (0, 1], got {top_p}")
    if temperature == 0:
        return Greedy()
    temperature = float(temperature)  # an int leaf would change the traced dtype
    if top_p is not None:
        return TopP(top_p=float(top_p), temperature=temperature, top_k=top_k)
    if top_k is not None:
        return TopK(k=top_k, temperature=temperature)
    return Temperature(temperature=temperature)
