"""Declarative Hugging Face ↔ gramr2_jax parameter tables, one per family.

Each entry: (HF tensor name, our parameter path, transform). `{i}` is the layer.
Our paths are nnx state paths joined by '/'; with scan_layers the layer index is
dropped and the per-layer tensors are stacked on a leading 'layers' axis.

RoPE layout: HF checkpoints store q/k rows in the "rotate_half" order that
`rope.apply_rope` uses, so no q/k permutation is applied in either direction
(Meta/llama2.c interleaved checkpoints must go through HF's converter first).

Transforms (HF torch Linear weights are [out, in]; ours are [in, out]):
  copy       same array
  in_heads   [N*H, D]  → [D, N, H]     q/k/v projections
  out_heads  [D, N*H]  → [N, H, D]     attention output projection
  linear     [out, in] → [in, out]     MLP and untied lm_head
  bias_heads [N*H]     → [N, H]        Qwen2 q/k/v biases
"""

from __future__ import annotations

import numpy as np

from gramr2_jax.models.config import ModelConfig


def to_ours(transform: str, hf: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """HF array → our layout with the given shape."""
    if transform in ("copy", "bias_heads"):
        return hf.reshape(shape)
    if transform in ("in_heads", "out_heads", "linear"):
        return np.ascontiguousarray(hf.T).reshape(shape)
    raise ValueError(f"unknown transform {transform!r}")


def to_hf(transform: str, ours: np.ndarray) -> np.ndarray:
    """Our array → HF layout (inverse of to_ours)."""
    if transform == "copy":
        return ours
    if transform == "in_heads":  # [D, N, H] → [N*H, D]
        return np.ascontiguousarray(ours.reshape(ours.shape[0], -1).T)
    if transform == "out_heads":  # [N, H, D] → [D, N*H]
        return np.ascontiguousarray(ours.reshape(-1, ours.shape[-1]).T)
    if transform == "linear":
        return np.ascontiguousarray(ours.T)
    if transform == "bias_heads":
        return ours.reshape(-1)
    raise ValueError(f"unknown transform {transform!r}")


_LLAMA_GLOBAL = (
    ("model.embed_tokens.weight", "embed", "copy"),
    ("model.norm.weight", "final_norm/scale", "copy"),
)
_LLAMA_LAYER = (
    ("model.layers.{i}.input_layernorm.weight", "layers/{i}/attn_norm/scale", "copy"),
    ("model.layers.{i}.self_attn.q_proj.weight", "layers/{i}/attn/q_proj", "in_heads"),
    ("model.layers.{i}.self_attn.k_proj.weight", "layers/{i}/attn/k_proj", "in_heads"),
    ("model.layers.{i}.self_attn.v_proj.weight", "layers/{i}/attn/v_proj", "in_heads"),
    ("model.layers.{i}.self_attn.o_proj.weight", "layers/{i}/attn/o_proj", "out_heads"),
    ("model.layers.{i}.post_attention_layernorm.weight", "layers/{i}/mlp_norm/scale", "copy"),
    ("model.layers.{i}.mlp.gate_proj.weight", "layers/{i}/mlp/gate_proj", "linear"),
    ("model.layers.{i}.mlp.up_proj.weight", "layers/{i}/mlp/up_proj", "linear"),
    ("model.layers.{i}.mlp.down_proj.weight", "layers/{i}/mlp/down_proj", "linear"),
)
_QKV_BIAS = (
    ("model.layers.{i}.self_attn.q_proj.bias", "layers/{i}/attn/q_bias", "bias_heads"),
    ("model.layers.{i}.self_attn.k_proj.bias", "layers/{i}/attn/k_bias", "bias_heads"),
    ("model.layers.{i}.self_attn.v_proj.bias", "layers/{i}/attn/v_bias", "bias_heads"),
)
_QK_NORM = (
    ("model.layers.{i}.self_attn.q_norm.weight", "layers/{i}/attn/q_norm/scale", "copy"),
    ("model.layers.{i}.self_attn.k_norm.weight", "layers/{i}/attn/k_norm/scale", "copy"),
)
_LM_HEAD = (("lm_head.weight", "lm_head", "linear"),)

# family → (global entries, per-layer entries)
TABLES = {
    "llama": (_LLAMA_GLOBAL, _LLAMA_LAYER),
    "mistral": (_LLAMA_GLOBAL, _LLAMA_LAYER),
    "qwen2": (_LLAMA_GLOBAL, _LLAMA_LAYER + _QKV_BIAS),
    "qwen3": (_LLAMA_GLOBAL, _LLAMA_LAYER + _QK_NORM),
}

# Buffers some checkpoints carry that are recomputed here, not loaded.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def param_table(cfg: ModelConfig) -> list[tuple[str, str, str, int | None]]:
    """(hf_name, our_path, transform, layer) for every tensor of this config."""
    global_entries, layer_entries = TABLES[cfg.family]
    if cfg.qkv_bias and cfg.family != "qwen2":
        layer_entries = layer_entries + _QKV_BIAS
    if cfg.qk_norm and cfg.family != "qwen3":
        layer_entries = layer_entries + _QK_NORM
    out = [(hf, ours, t, None) for hf, ours, t in global_entries]
    if not cfg.tie_word_embeddings:
        out += [(hf, ours, t, None) for hf, ours, t in _LM_HEAD]
    for i in range(cfg.num_layers):
        out += [(hf.format(i=i), ours.format(i=i), t, i) for hf, ours, t in layer_entries]
    return out

