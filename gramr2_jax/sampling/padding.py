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

import jax
import numpy as np
from flax import struct

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


def padded_count(num: int, cap: int) -> int:
    """Rows to run `num` prompts in: the next power of two, but no more than
    max(cap, num). A caller that works through a list `cap` prompts at a time then
    compiles at most log2(cap) + 1 batch shapes, whatever its last chunk's size."""
    if num < 1:
        raise ValueError(f"num: expected at least one prompt, got {num}")
    return min(1 << (num - 1).bit_length(), max(cap, num))


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


@struct.dataclass
class Packing:
    """Prompts packed several to a row for the prefill: numpy arrays from pack_prompts,
    device arrays (jax.tree.map) as the input of decode.generate.

    tokens/positions/segments [G, W]: row g holds whole prompts one after another;
      segments numbers them from 1 within the row (0 = padding), positions count from 0
      in each prompt. Attention stays inside a segment, so every prompt sees exactly
      the keys it would see alone.
    row/col [B, P]: slot s of prompt b's left-padded layout (left_pad, width P) lies at
      packed row row_BP[b, s], column col_BP[b, s]; padding slots point at column 0 of
      the prompt's row (their values are masked out).
    """

    tokens_GW: np.ndarray | jax.Array
    positions_GW: np.ndarray | jax.Array
    segments_GW: np.ndarray | jax.Array
    row_BP: np.ndarray | jax.Array
    col_BP: np.ndarray | jax.Array


def pack_prompts(seqs: Sequence[Sequence[int]], width: int, pad_id: int,
                 row_multiple: int = 1, prompt_width: int | None = None) -> Packing | None:
    """Packs prompts into rows of `width` tokens, or None if that saves no row.

    First fit decreasing: longest prompt first, each into the first row with room. The
    row count is rounded up to a multiple of `row_multiple` (it bounds the compiled
    shapes); None when that is not fewer rows than prompts. prompt_width: P of the
    left-padded layout that row/col map (default `width`).
    """
    prompt_width = width if prompt_width is None else prompt_width
    lengths = np.array([len(s) for s in seqs])
    if lengths.size == 0 or lengths.min() < 1 or lengths.max() > min(width, prompt_width):
        raise ValueError(f"pack_prompts: lengths must be in [1, {min(width, prompt_width)}], got "
                         f"{lengths.min(initial=0)}..{lengths.max(initial=0)}")
    room = np.zeros(0, np.int64)  # free slots per row so far
    bins: list[list[int]] = []
    for b in np.argsort(-lengths, kind="stable"):  # first fit, longest first
        fits = np.flatnonzero(room >= lengths[b])
        if fits.size:
            bins[fits[0]].append(b)
            room[fits[0]] -= lengths[b]
        else:
            bins.append([b])
            room = np.append(room, width - lengths[b])
    rows = -(-len(bins) // row_multiple) * row_multiple
    if rows >= len(seqs):
        return None
    tokens = np.full((rows, width), pad_id, np.int32)
    positions = np.zeros((rows, width), np.int32)
    segments = np.zeros((rows, width), np.int32)
    row_of = np.zeros((len(seqs), prompt_width), np.int32)
    col_of = np.zeros((len(seqs), prompt_width), np.int32)
    for g, members in enumerate(bins):
        start = 0
        for segment, b in enumerate(members, start=1):
            n = lengths[b]
            tokens[g, start:start + n] = seqs[b]
            positions[g, start:start + n] = np.arange(n)
            segments[g, start:start + n] = segment
            row_of[b] = g
            col_of[b, prompt_width - n:] = np.arange(start, start + n)
            start += n
    return Packing(tokens_GW=tokens, positions_GW=positions, segments_GW=segments,
                   row_BP=row_of, col_BP=col_of)
