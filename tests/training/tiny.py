"""Tiny model, synthetic judge-like data and a Loader over it, for the training tests.

Examples: a random "prompt" of tokens, then a target whose verdict token is A
or B and whose other tokens are a deterministic function of the prompt, so
every loss can be driven close to zero by a small model.
"""

from __future__ import annotations

import numpy as np
from flax import nnx

from gramr2_jax.data.loader import Loader
from gramr2_jax.models import ModelConfig, Transformer

VOCAB = 64
VERDICT_IDS = (5, 6)  # "A", "B"


def tiny_config(**overrides) -> ModelConfig:
    kw = dict(family="llama", vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=4,
              num_kv_heads=2, head_dim=8, mlp_dim=64, max_position_embeddings=128)
    kw.update(overrides)
    return ModelConfig(**kw)


def tiny_model(seed: int = 0, **overrides) -> Transformer:
    return Transformer(tiny_config(**overrides), rngs=nnx.Rngs(seed))


def sft_examples(n: int, seed: int = 0, min_prompt: int = 4, max_prompt: int = 12) -> list[dict]:
    """Rows: prompt tokens (10..63) + [label token, 2 tokens copied from the prompt, 1]."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        prompt = rng.integers(10, VOCAB, size=int(rng.integers(min_prompt, max_prompt + 1)))
        label = int(prompt[0] % 2)
        target = np.array([VERDICT_IDS[label], prompt[1], prompt[2], 1])
        rows.append({"prompt": prompt, "target": target, "label": label})
    return rows


def encode_sft(row: dict) -> dict:
    tokens = np.concatenate([row["prompt"], row["target"]]).astype(np.int32)
    loss_mask = np.zeros(len(tokens), bool)
    loss_mask[len(row["prompt"]):] = True
    return {"tokens": tokens, "loss_mask": loss_mask, "labels": row["label"],
            "verdict_positions": len(row["prompt"])}


def bt_examples(n: int, seed: int = 0) -> list[dict]:
    """Pairs whose chosen response ends with token 7 and rejected one with token 8."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        prompt = rng.integers(10, VOCAB, size=int(rng.integers(3, 8)))
        body = rng.integers(10, VOCAB, size=int(rng.integers(1, 4)))
        rows.append({"chosen": np.concatenate([prompt, body, [7]]).astype(np.int32),
                     "rejected": np.concatenate([prompt, body, [8]]).astype(np.int32)})
    return rows


def encode_bt(row: dict) -> dict:
    return {"chosen_tokens": row["chosen"], "rejected_tokens": row["rejected"]}


def make_loader(rows: list[dict], encode, *, batch_size: int, seed: int = 0,
                process_index: int = 0, process_count: int = 1) -> Loader:
    return Loader(rows, encode, batch_size=batch_size, seed=seed, window_batches=4,
                  length_buckets=(16, 32), process_index=process_index,
                  process_count=process_count)
