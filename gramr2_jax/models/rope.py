"""Rotary position embeddings.

Layout (stated once, because it is the most common conversion bug): we use the
Hugging Face "rotate_half" layout. Within a head of size H, dimension i pairs
with i + H/2 (first half = real parts, second half = imaginary parts). Meta's
original Llama checkpoints (and llama2.c) pair 2i with 2i+1 instead; HF
checkpoints already carry the q/k row permutation that converts one into the
other, so HF weights load here with no permutation.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from gramr2_jax.models.config import RopeScaling


def inverse_frequencies(head_dim: int, theta: float,
                        scaling: RopeScaling | None = None) -> np.ndarray:
    """Per-pair inverse frequencies [H/2], with optional llama3/linear scaling."""
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    if scaling is None:
        return inv_freq.astype(np.float32)
    if scaling.kind == "linear":
        return (inv_freq / scaling.factor).astype(np.float32)
    if scaling.kind != "llama3":
        raise ValueError(f"rope_scaling: unsupported type {scaling.kind!r}")
    # Llama 3.1: keep high frequencies, divide low ones by `factor`, blend between.
    old_len = scaling.original_max_position_embeddings
    low_wavelen = old_len / scaling.low_freq_factor
    high_wavelen = old_len / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (old_len / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor)
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    is_medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(is_medium, smoothed, scaled).astype(np.float32)


def rope_tables(positions_BT: jax.Array, inv_freq: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """(cos, sin) [B, T, H/2] of every position's angles, float32; computed once
    per forward and shared by q and k of every layer."""
    angles_BTF = positions_BT[..., None].astype(jnp.float32) * jnp.asarray(inv_freq)
    return _materialized(jnp.cos(angles_BTF)), _materialized(jnp.sin(angles_BTF))


def _materialized(table_BTF: jax.Array) -> jax.Array:
    """The table itself, computed once. XLA:CPU fuses elementwise producers into every
    consumer, so without this it recomputes the positions, sin and cos for every head
    of every q/k rotation (≈ 4 % of a training step, benchmarks/TRAINING.md); a dot is
    never fused into its consumers. Exact: x·1 + Σ 0·y = x for finite x (HIGHEST, so
    TPUs do not round the f32 operand to bf16)."""
    eye = jnp.eye(table_BTF.shape[-1], dtype=table_BTF.dtype)
    return jnp.matmul(table_BTF, eye, precision=jax.lax.Precision.HIGHEST)


def apply_rope(x_BTNH: jax.Array, tables: tuple[jax.Array, jax.Array]) -> jax.Array:
    """Rotates x by the `rope_tables` of its positions (rotate_half layout); math in float32."""
    cos, sin = (t[:, :, None, :] for t in tables)
    x1, x2 = jnp.split(x_BTNH.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return rotated.astype(x_BTNH.dtype)
