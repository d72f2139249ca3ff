"""Shared tiny models for the sampling tests (built once per session)."""

import contextlib
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gramr2_jax.models import ModelConfig, Transformer
from gramr2_jax.sampling import Sampler, left_pad

TINY = ModelConfig(family="llama", vocab_size=97, hidden_size=32, num_layers=2, num_heads=4,
                   num_kv_heads=2, head_dim=8, mlp_dim=48, rms_norm_eps=1e-5,
                   max_position_embeddings=256, bos_token_id=1, eos_token_id=2)


def tiny_model(seed: int = 0, config: ModelConfig = TINY) -> Transformer:
    model = Transformer(config, rngs=nnx.Rngs(seed))
    # Larger weights than the 0.02 init, so distributions are far from uniform
    # and a wrong cache/position shows up as different tokens.
    state = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda p: p * 8.0 if p.ndim > 1 else p, state))
    return model


@pytest.fixture(scope="session")
def model() -> Transformer:
    return tiny_model()


@pytest.fixture(scope="session")
def sampler(model) -> Sampler:
    return Sampler(model)


PROMPTS = [[1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 53, 57, 61, 65, 69, 73],
           [1, 7], [1, 30, 31, 32, 33, 34]]
# Mixed lengths (19, 2, 6, 11, 3, 9) in bucket 24: rows of 24 hold them in 3 rows
# (19+3+2, 11+9, 6), rows of 48 in 2 (packed prefill, test_packing.py).
MIXED = PROMPTS + [[1, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49], [1, 60, 61],
                   [1, 70, 71, 72, 73, 74, 75, 76, 77]]


@nnx.jit
def _forward(model, tokens_BT, mask_BT):
    return model(tokens_BT, input_mask_BT=mask_BT)


def full_forward_logits(model, seqs) -> list[np.ndarray]:
    """Per sequence [T, V] logits from one uncached (left-padded) forward pass."""
    length = max(len(s) for s in seqs)
    tokens, mask = left_pad(seqs, length, pad_id=0)
    logits = np.asarray(_forward(model, jnp.asarray(tokens), jnp.asarray(mask)))
    return [logits[row, length - len(s):] for row, s in enumerate(seqs)]


def full_forward_logprobs(model, seqs) -> list[np.ndarray]:
    """Per sequence [T-1] log p(seq[t] | seq[:t]) from the uncached forward pass."""
    out = []
    for seq, logits in zip(seqs, full_forward_logits(model, seqs)):
        logp = np.asarray(jax.nn.log_softmax(jnp.asarray(logits[:-1])))
        out.append(logp[np.arange(len(seq) - 1), seq[1:]])
    return out


def count_compiles(caplog) -> int:
    """XLA compiles of the generate function logged so far (inside `logging_compiles`)."""
    return sum("Finished XLA compilation of jit(generate)" in r.getMessage()
               for r in caplog.records)


@contextlib.contextmanager
def logging_compiles(caplog):
    """jax_log_compiles for every thread (jax.log_compiles() is the calling thread's only)."""
    jax.config.update("jax_log_compiles", True)
    try:
        with caplog.at_level(logging.WARNING):
            yield
    finally:
        jax.config.update("jax_log_compiles", False)
