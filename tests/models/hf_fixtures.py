"""Tiny random Hugging Face models (transformers + torch) for parity tests."""

from __future__ import annotations

import json
import pathlib

import numpy as np

FAMILY_CONFIGS = {
    # Llama 3.1-style: GQA, llama3 RoPE scaling, untied, written in the current config style.
    "llama3": dict(
        model_type="llama", vocab_size=160, hidden_size=64, intermediate_size=96,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        rms_norm_eps=1e-5, max_position_embeddings=128, tie_word_embeddings=False,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 64}),
    # Llama 2-style, tied embeddings; config.json rewritten in the OLD style below.
    "llama2_oldstyle": dict(
        model_type="llama", vocab_size=128, hidden_size=48, intermediate_size=80,
        num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=6,
        rms_norm_eps=1e-6, max_position_embeddings=64, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
    "mistral": dict(
        model_type="mistral", vocab_size=128, hidden_size=64, intermediate_size=112,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
        rms_norm_eps=1e-5, max_position_embeddings=64, sliding_window=5,
        tie_word_embeddings=False, rope_parameters={"rope_type": "default", "rope_theta": 1e4}),
    "qwen2": dict(
        model_type="qwen2", vocab_size=150, hidden_size=64, intermediate_size=96,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        rms_norm_eps=1e-6, max_position_embeddings=64, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6}),
    # Qwen3 with head_dim (24) != hidden_size / num_heads (64 / 4 = 16).
    "qwen3": dict(
        model_type="qwen3", vocab_size=140, hidden_size=64, intermediate_size=96,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=24,
        rms_norm_eps=1e-6, max_position_embeddings=64, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6}),
}


def make_hf_model(name: str, out_dir: pathlib.Path, seed: int = 0):
    """Saves a random HF model to out_dir and returns the torch model (eval, f32)."""
    import torch
    import transformers

    kwargs = dict(FAMILY_CONFIGS[name])
    model_type = kwargs.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **kwargs)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    with torch.no_grad():  # non-trivial norms and biases, so a mapping slip shows up
        for _, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.05)
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    if name == "llama2_oldstyle":
        cfg = json.loads((out_dir / "config.json").read_text())
        rope = cfg.pop("rope_parameters")
        cfg["rope_theta"] = rope["rope_theta"]
        cfg["rope_scaling"] = None
        (out_dir / "config.json").write_text(json.dumps(cfg))
    return model


def padded_batch(vocab_size: int, lengths=(9, 5, 12), total=12, seed=0, left=True):
    """Token ids, mask and positions for a padded batch (left padding by default)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, vocab_size, size=(len(lengths), total)).astype(np.int32)
    mask = np.zeros((len(lengths), total), bool)
    for row, n in enumerate(lengths):
        if left:
            mask[row, total - n:] = True
        else:
            mask[row, :n] = True
    tokens = np.where(mask, tokens, 0)
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)
    return tokens, mask, positions


def hf_logits(model, tokens, mask, positions) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.tensor(tokens, dtype=torch.long),
                    attention_mask=torch.tensor(mask, dtype=torch.long),
                    position_ids=torch.tensor(positions, dtype=torch.long))
    return out.logits.float().numpy()
