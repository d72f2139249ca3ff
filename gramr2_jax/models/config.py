"""Model configuration: one frozen dataclass for every supported decoder family.

Families: Llama (2, 3, 3.1/3.2 with llama3 RoPE scaling), Mistral, Qwen2/2.5
(q/k/v bias) and Qwen3 (per-head q/k RMSNorm, head_dim independent of
hidden/heads). They differ only in the flags below, so one module covers all.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

FAMILIES = ("llama", "mistral", "qwen2", "qwen3")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """RoPE frequency scaling. kind: 'llama3' or 'linear' (None = plain RoPE)."""

    kind: str
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    family: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    mlp_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10_000.0
    rope_scaling: RopeScaling | None = None
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    qkv_bias: bool = False  # Qwen2/2.5
    qk_norm: bool = False  # Qwen3
    sliding_window: int | None = None  # Mistral v0.1
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    # Numerics and layout: not part of the checkpoint.
    param_dtype: Any = jnp.float32
    dtype: Any = jnp.float32  # compute dtype of matmuls
    remat: str = "none"  # "none" | "full" (recompute each block in the backward pass)
    scan_layers: bool = False
    # A forward without a cache (training, teacher-forced scoring) splits its queries
    # into up to this many causal blocks of at least CAUSAL_BLOCK_MIN rows, and each
    # block reads only the keys up to its last row: the same attention, with the
    # products above the diagonal skipped. 1: one [T, T] product.
    causal_blocks: int = 8

    def __post_init__(self):
        errors = []
        if self.family not in FAMILIES:
            errors.append(f"family: {self.family!r} is not one of {FAMILIES}")
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads",
                     "num_kv_heads", "head_dim", "mlp_dim"):
            if getattr(self, name) <= 0:
                errors.append(f"{name}: must be positive, got {getattr(self, name)}")
        if self.num_kv_heads > 0 and self.num_heads % self.num_kv_heads:
            errors.append(f"num_heads: {self.num_heads} is not a multiple of "
                          f"num_kv_heads={self.num_kv_heads}")
        if self.head_dim % 2:
            errors.append(f"head_dim: RoPE needs an even head_dim, got {self.head_dim}")
        if self.causal_blocks < 1:
            errors.append(f"causal_blocks: must be at least 1, got {self.causal_blocks}")
        if self.remat not in ("none", "full"):
            errors.append(f"remat: expected 'none' or 'full', got {self.remat!r}")
        if errors:
            raise ValueError("invalid ModelConfig: " + "; ".join(errors))

    @property
    def eos_ids(self) -> tuple[int, ...]:
        if self.eos_token_id is None:
            return ()
        if isinstance(self.eos_token_id, int):
            return (self.eos_token_id,)
        return tuple(self.eos_token_id)

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def num_params(self) -> int:
        d, h, layers = self.hidden_size, self.head_dim, self.num_layers
        attn = d * h * (2 * self.num_heads + 2 * self.num_kv_heads)
        if self.qkv_bias:
            attn += h * (self.num_heads + 2 * self.num_kv_heads)
        if self.qk_norm:
            attn += 2 * h
        block = attn + 3 * d * self.mlp_dim + 2 * d
        embed = self.vocab_size * d * (1 if self.tie_word_embeddings else 2)
        return layers * block + embed + d


def _preset(**kw) -> ModelConfig:
    return ModelConfig(**kw)


# Architecture presets (shapes of the public checkpoints; weights load with
# from_pretrained). "tiny" is the CPU demo / test size.
PRESETS: dict[str, ModelConfig] = {
    "tiny": _preset(
        family="llama", vocab_size=512, hidden_size=128, num_layers=4, num_heads=4,
        num_kv_heads=2, head_dim=32, mlp_dim=384, rms_norm_eps=1e-5,
        max_position_embeddings=1024, tie_word_embeddings=True),
    "qwen3_0.6b": _preset(
        family="qwen3", vocab_size=151_936, hidden_size=1024, num_layers=28,
        num_heads=16, num_kv_heads=8, head_dim=128, mlp_dim=3072, rope_theta=1e6,
        max_position_embeddings=40_960, tie_word_embeddings=True, qk_norm=True),
    "llama3.2_3b": _preset(
        family="llama", vocab_size=128_256, hidden_size=3072, num_layers=28,
        num_heads=24, num_kv_heads=8, head_dim=128, mlp_dim=8192, rms_norm_eps=1e-5,
        rope_theta=500_000.0, max_position_embeddings=131_072, tie_word_embeddings=True,
        rope_scaling=RopeScaling("llama3", 32.0, 1.0, 4.0, 8192)),
    "llama3.1_8b": _preset(
        family="llama", vocab_size=128_256, hidden_size=4096, num_layers=32,
        num_heads=32, num_kv_heads=8, head_dim=128, mlp_dim=14_336, rms_norm_eps=1e-5,
        rope_theta=500_000.0, max_position_embeddings=131_072,
        rope_scaling=RopeScaling("llama3", 8.0, 1.0, 4.0, 8192)),
    "qwen3_8b": _preset(
        family="qwen3", vocab_size=151_936, hidden_size=4096, num_layers=36,
        num_heads=32, num_kv_heads=8, head_dim=128, mlp_dim=12_288, rope_theta=1e6,
        max_position_embeddings=40_960, qk_norm=True),
}


def preset(name: str, **overrides) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"model.preset: unknown preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides)
