"""Decoder models: config, Flax NNX transformer, KV cache, HF import/export."""

from gramr2_jax.models.config import PRESETS, ModelConfig, RopeScaling, preset
from gramr2_jax.models.hf_io import (
    CheckpointError,
    config_from_hf,
    config_to_hf,
    from_pretrained,
    load_config,
    save_pretrained,
)
from gramr2_jax.models.kv_cache import KVCache
from gramr2_jax.models.tokenizer import load_tokenizer
from gramr2_jax.models.transformer import Transformer

__all__ = [
    "PRESETS", "ModelConfig", "RopeScaling", "preset", "CheckpointError", "config_from_hf",
    "config_to_hf", "from_pretrained", "load_config", "save_pretrained", "KVCache",
    "load_tokenizer", "Transformer",
]
