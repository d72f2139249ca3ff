"""The KV cache: an explicit pytree with a written-down layout.

Layout
  k      [B, K, H, S] per layer  batch, kv heads, head dim, cache slots
  v      [B, K, S, H] per layer  batch, kv heads, cache slots, head dim
         a tuple of L arrays; one stacked [L, ...] array when the model scans
         its layers (config.scan_layers). Logical axes: K_AXES / V_AXES below.
  mask   [B, S] bool      slot s of row b holds a real (non-padding) token
  end    []   int32       the next slot to write; shared by all rows

All rows write the same slots at the same step, so padding is LEFT padding:
a prompt shorter than the bucket starts later in the cache, its pad slots stay
masked, and its RoPE positions count real tokens only (the caller passes them).
Slot order equals position order within each row, which keeps causal and
sliding-window masks exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from gramr2_jax.models.config import ModelConfig

# Keys are stored transposed so that both attention contractions are plain
# batched matmuls over (row, kv head): logits [G·T, H] @ k [H, S] and output
# [G·T, S] @ v [S, H]. With [B, S, K, H] XLA:CPU copied both cache slices into
# this order on every layer of every decode step. Separate per-layer arrays
# because XLA:CPU also copied each layer's slice out of a stacked [L, ...]
# cache before its matmuls (6 of 30 ms per decode step; benchmarks/SAMPLING.md).
K_AXES = ("cache_batch", "cache_kv_heads", "head_dim", "cache_sequence")
V_AXES = ("cache_batch", "cache_kv_heads", "cache_sequence", "head_dim")
MASK_AXES = ("cache_batch", "cache_sequence")


@struct.dataclass
class KVCache:
    k: tuple[jax.Array, ...] | jax.Array
    v: tuple[jax.Array, ...] | jax.Array
    mask: jax.Array
    end: jax.Array

    @classmethod
    def zeros(cls, config: ModelConfig, batch: int, length: int, dtype=None) -> "KVCache":
        dtype = config.dtype if dtype is None else dtype
        k_shape = (batch, config.num_kv_heads, config.head_dim, length)
        v_shape = (batch, config.num_kv_heads, length, config.head_dim)
        if config.scan_layers:
            layers = (config.num_layers,)
            k, v = jnp.zeros(layers + k_shape, dtype), jnp.zeros(layers + v_shape, dtype)
        else:
            k = tuple(jnp.zeros(k_shape, dtype) for _ in range(config.num_layers))
            v = tuple(jnp.zeros(v_shape, dtype) for _ in range(config.num_layers))
        return cls(k=k, v=v, mask=jnp.zeros((batch, length), bool),
                   end=jnp.zeros((), jnp.int32))

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    @property
    def batch(self) -> int:
        return self.mask.shape[0]

    def map_arrays(self, k_fn, v_fn) -> "KVCache":
        """Applies k_fn / v_fn to every per-layer (or stacked) key / value array."""
        return self.replace(k=jax.tree.map(k_fn, self.k), v=jax.tree.map(v_fn, self.v))

    def num_tokens(self) -> jax.Array:
        """Real tokens per row [B] (the next RoPE position of each row)."""
        return self.mask.sum(axis=-1, dtype=jnp.int32)

    def grow(self, length: int) -> "KVCache":
        """The same cache with empty (masked) slots appended up to `length` slots."""
        if length < self.length:
            raise ValueError(f"grow: {length} slots is less than the cache's {self.length}")
        return self._pad_slots(0, length - self.length)

    def pad_front(self, n: int) -> "KVCache":
        """The same cache with n empty (masked) slots before its first; `end` moves with
        its slots. Left padding keeps the slot distances between real tokens (sliding
        windows stay exact) and slot order = position order (module doc)."""
        if n < 0:
            raise ValueError(f"pad_front: {n} slots is negative")
        return self._pad_slots(n, 0)

    def _pad_slots(self, before: int, after: int) -> "KVCache":
        def pad(slot_axis):  # k keeps its slots last, v second to last (both layouts)
            return lambda x: jnp.pad(x, [(0, 0)] * (x.ndim + slot_axis) + [(before, after)]
                                     + [(0, 0)] * (-slot_axis - 1))

        return self.map_arrays(pad(-1), pad(-2)).replace(mask=pad(-1)(self.mask),
                                                         end=self.end + before)

    def gather(self, row_BW: jax.Array, col_BW: jax.Array, mask_BW: jax.Array) -> "KVCache":
        """A cache of B rows × W slots whose slot (b, s) is this cache's slot
        (row_BW[b, s], col_BW[b, s]), masked by mask_BW; `end` = W. Unpacks a prefill
        over packed prompts (padding.Packing) into the left-padded layout."""
        if row_BW.shape != col_BW.shape or row_BW.shape != mask_BW.shape:
            raise ValueError(f"gather: row {row_BW.shape}, col {col_BW.shape} and mask "
                             f"{mask_BW.shape} must have one shape")
        b, w = row_BW.shape
        flat = (row_BW * self.length + col_BW).reshape(-1)

        def take(slot_axis):  # via [.., rows·slots, K, H]: one gather over (row, slot)
            def fn(x):
                x = jnp.moveaxis(x, slot_axis, -3)
                x = x.reshape(x.shape[:-4] + (-1,) + x.shape[-2:])
                x = jnp.take(x, flat, axis=-3)
                return jnp.moveaxis(x.reshape(x.shape[:-3] + (b, w) + x.shape[-2:]), -3,
                                    slot_axis)
            return fn

        return self.map_arrays(take(-1), take(-2)).replace(
            mask=mask_BW.astype(bool), end=jnp.asarray(w, jnp.int32))

    def repeat(self, n: int) -> "KVCache":
        """Each row repeated n times (row b → rows b*n .. b*n+n-1): prefix sharing."""
        def rep(x):  # the batch axis is 4th from the end in both layouts
            return jnp.repeat(x, n, axis=x.ndim - 4)

        return self.map_arrays(rep, rep).replace(mask=jnp.repeat(self.mask, n, axis=0))
