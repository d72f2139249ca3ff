"""Per-example encoders and padding of examples into numpy batches.

Padding scheme (training batches): RIGHT padding. Real tokens sit at positions
0..n-1 of each row, so positions are ``arange(T)`` and causal attention needs only
``input_mask``; pad tokens are id ``pad_id`` (default 0) with every mask False.
Rows that only fill up a short final batch have ``example_mask`` False, all-False
masks and label -1. T is the smallest length bucket that holds the longest row.

Batch keys:
  SFT  ``tokens`` [B,T] int32, ``input_mask`` [B,T] bool, ``loss_mask`` [B,T] bool
       (target tokens only), ``labels`` [B] int32 (0 = A, 1 = B),
       ``verdict_positions`` [B] int32 (index in tokens of the verdict token),
       ``example_mask`` [B] bool.
  BT   ``chosen_tokens``/``rejected_tokens`` [B,T] int32, ``chosen_mask``/
       ``rejected_mask`` [B,T] bool, ``example_mask`` [B] bool.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from gramr2_jax.data.prompts import JudgePromptBuilder, PairSequenceBuilder
from gramr2_jax.data.schema import JudgeExample, LabelledPair

Example = dict[str, Any]  # 1-D int arrays for sequences, ints for scalars
DEFAULT_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192)


def sft_encoder(builder: JudgePromptBuilder, max_len: int) -> Callable[[JudgeExample], Example | None]:
    def encode(example: JudgeExample) -> Example | None:
        sft = builder.sft_example(example, max_len=max_len)
        if sft is None:
            return None
        return {"tokens": sft.tokens, "loss_mask": sft.loss_mask, "labels": sft.label,
                "verdict_positions": len(sft.prompt_ids) + sft.verdict_index}
    return encode


def bt_encoder(builder: PairSequenceBuilder) -> Callable[[LabelledPair], Example]:
    def encode(pair: LabelledPair) -> Example:
        return {"chosen_tokens": np.asarray(builder.encode(pair.prompt, pair.chosen), np.int32),
                "rejected_tokens": np.asarray(builder.encode(pair.prompt, pair.rejected), np.int32)}
    return encode


def _mask_name(token_key: str) -> str:
    return "input_mask" if token_key == "tokens" else token_key.replace("_tokens", "_mask")


def example_length(example: Mapping[str, Any]) -> int:
    return max(len(v) for k, v in example.items() if k.endswith("tokens"))


def bucket_length(length: int, buckets: Sequence[int]) -> int:
    for bucket in sorted(buckets):
        if length <= bucket:
            return bucket
    raise ValueError(f"a sequence of {length} tokens exceeds the largest length bucket "
                     f"{max(buckets)}; truncate in the encoder or add a bucket")


def collate(examples: Sequence[Example], batch_size: int, buckets: Sequence[int] = DEFAULT_BUCKETS,
            pad_id: int = 0) -> dict[str, np.ndarray]:
    """Right-pads ``examples`` (at most batch_size) into one batch of batch_size rows."""
    if not examples or len(examples) > batch_size:
        raise ValueError(f"need 1..{batch_size} examples, got {len(examples)}")
    T = bucket_length(max(example_length(e) for e in examples), buckets)
    batch: dict[str, np.ndarray] = {"example_mask": np.zeros(batch_size, bool)}
    batch["example_mask"][: len(examples)] = True
    for key, value in examples[0].items():
        if key.endswith("tokens"):
            tokens = np.full((batch_size, T), pad_id, np.int32)
            mask = np.zeros((batch_size, T), bool)
            for row, e in enumerate(examples):
                tokens[row, : len(e[key])] = e[key]
                mask[row, : len(e[key])] = True
            batch[key], batch[_mask_name(key)] = tokens, mask
        elif np.ndim(value) == 1:  # a per-token mask, e.g. loss_mask
            out = np.zeros((batch_size, T), bool)
            for row, e in enumerate(examples):
                out[row, : len(e[key])] = e[key]
            batch[key] = out
        else:
            out = np.full(batch_size, -1, np.int32)
            out[: len(examples)] = [e[key] for e in examples]
            batch[key] = out
    return batch
