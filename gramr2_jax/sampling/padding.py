"""Prompt tokenization, length buckets and LEFT padding.

Padding scheme (the KV cache's, see models/kv_cache.py): every prompt is
right-aligned in a [B, P] block, P = a bucket ≥ `min_bucket` (see bucket_length).
Pad slots are masked out of attention and do not count as RoPE positions, so
a padded prompt behaves exactly as it would alone; all rows then decode into
the same cache slot at each step. Buckets bound the number of compiled shapes
to two per doubling of the prompt length.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Prompt = str | Sequence[int]


def bucket_length(n: int, min_bucket: int = 16) -> int:
    """The smallest bucket ≥ n among min_bucket·2^i and (even sizes) 1.5·min_bucket·2^i.

    With min_bucket 16: 16, 24, 32, 48, 64, 96, 128, ... Two shapes per doubling;
    at most a third of a bucket is padding (a half with powers of two alone).
    """
    size = max(min_bucket, 1)
    while size < n:
        if size % 2 == 0 and size * 3 // 2 >= n:
            return size * 3 // 2
        size *= 2
    return size


def tokenize(items: Sequence[Prompt], tokenizer, *, add_special_tokens: bool,
             what: str = "prompts") -> list[list[int]]:
    """Token ids for a list of strings or id lists (strings need a tokenizer)."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            if tokenizer is None:
                raise ValueError(f"{what}[{i}]: a string needs a tokenizer (or pass token ids)")
            ids = tokenizer.encode(item, add_special_tokens=add_special_tokens)
        else:
            ids = [int(t) for t in np.asarray(item).reshape(-1)]
        out.append(list(ids))
    return out


def left_pad(seqs: Sequence[Sequence[int]], length: int,
             pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens [B, length] int32, mask [B, length] bool), sequences right-aligned."""
    tokens = np.full((len(seqs), length), pad_id, np.int32)
    mask = np.zeros((len(seqs), length), bool)
    for row, seq in enumerate(seqs):
        if len(seq) > length:
            raise ValueError(f"sequence {row}: {len(seq)} tokens do not fit in {length}")
        if len(seq):
            tokens[row, length - len(seq):] = seq
            mask[row, length - len(seq):] = True
    return tokens, mask
