"""The KV cache: an explicit pytree with a written-down layout.

Layout
  k, v   [L, B, S, K, H]  layers, batch, cache slots, kv heads, head dim
         logical axes ('layers', 'cache_batch', 'cache_sequence', 'cache_kv_heads', 'head_dim')
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

CACHE_AXES = ("layers", "cache_batch", "cache_sequence", "cache_kv_heads", "head_dim")


@struct.dataclass
class KVCache:
    k: jax.Array
    v: jax.Array
    mask: jax.Array
    end: jax.Array

    @classmethod
    def zeros(cls, config: ModelConfig, batch: int, length: int, dtype=None) -> "KVCache":
        dtype = config.dtype if dtype is None else dtype
        shape = (config.num_layers, batch, length, config.num_kv_heads, config.head_dim)
        return cls(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype),
                   mask=jnp.zeros((batch, length), bool), end=jnp.zeros((), jnp.int32))

    @property
    def length(self) -> int:
        return self.k.shape[2]

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    def num_tokens(self) -> jax.Array:
        """Real tokens per row [B] (the next RoPE position of each row)."""
        return self.mask.sum(axis=-1, dtype=jnp.int32)

    def repeat(self, n: int) -> "KVCache":
        """Each row repeated n times (row b → rows b*n .. b*n+n-1): prefix sharing."""
        return self.replace(k=jnp.repeat(self.k, n, axis=1), v=jnp.repeat(self.v, n, axis=1),
                            mask=jnp.repeat(self.mask, n, axis=0))
