"""Decoder-only transformer (Llama / Mistral / Qwen2 / Qwen3) in Flax NNX.

Parameters carry logical axis names in their `logical_axes` metadata; physical
sharding is decided in `gramr2_jax.sharding` from config rules.

Shapes use suffixes: B batch, T query tokens, S key slots, D hidden, N query
heads, K kv heads, G = N/K query heads per kv head, H head dim, F mlp, V vocab.

Padding: `input_mask_BT` marks real tokens. Without a cache, queries attend to
real keys at or before them (left or right padding both work); positions default
to the count of real tokens before each one. With a cache, see kv_cache.py.

Causal blocks: without a cache, query slot t reads key slots 0..t, so the queries
are split into up to `config.causal_blocks` blocks and each reads only the keys up
to its last row (`attend_causal_blocks`). A row with no real key (padding) then
spreads uniformly over its block's keys instead of all keys; its output is
padding either way.

Shared prefix (sampling k continuations per prompt): `prefix=` is a read-only
KVCache of Bp prompts; rows b*r .. b*r+r-1 (r = B / Bp) all attend to prefix
row b, then to their own `cache`. The prefix is stored and read once per
prompt instead of once per continuation.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from gramr2_jax.models.config import ModelConfig
from gramr2_jax.models.kv_cache import KVCache
from gramr2_jax.models.rope import apply_rope, inverse_frequencies, rope_tables
from gramr2_jax.sharding import constrain

_MASKED = -1e30  # finite, so a row with no valid key gives a uniform row, not NaN
CAUSAL_BLOCK_MIN = 64  # query rows per causal block, at least
_ACT = ("activation_batch", "activation_length", "activation_embed")


def _param(rngs: nnx.Rngs | None, shape, axes, dtype, init: str = "normal") -> nnx.Param:
    if init == "ones":
        value = jnp.ones(shape, dtype)
    elif init == "zeros":
        value = jnp.zeros(shape, dtype)
    else:
        value = (0.02 * jax.random.normal(rngs.params(), shape, jnp.float32)).astype(dtype)
    return nnx.Param(value, logical_axes=axes)


class FeatureMajor(nnx.Variable):
    """A matmul weight's [out, in] copy, added by `Transformer.use_feature_major` to a
    model merged inside a jitted call; never trained or saved."""


def dense(x_ND: jax.Array, w_DF: jax.Array | None, w_FD: jax.Array | None = None) -> jax.Array:
    """x_ND @ w_DF; given w's [out, in] copy w_FD, computed feature-major as (w_FD @ xᵀ)ᵀ.

    With few rows N, XLA:CPU runs [F, D] @ [D, N] up to 1.5× faster than [N, D] @ [D, F]
    (benchmarks/SAMPLING.md). The barriers keep its simplifier from folding the transposes
    back into the dot, which would undo that.
    """
    if w_FD is None:
        return x_ND @ w_DF
    y_FN = w_FD @ jax.lax.optimization_barrier(x_ND.T)
    return jax.lax.optimization_barrier(y_FN).T


def _copy_out_in(module: nnx.Module, name: str) -> jax.Array | None:
    """The FeatureMajor copy of the module's weight `name` (made in the compute dtype),
    or None (the usual path)."""
    copy = getattr(module, f"{name}_out_in", None)
    return None if copy is None else copy.value


def _out_in(w: jax.Array, num_in: int, num_dims: int) -> jax.Array:
    """A weight of num_dims dims (num_in of them inputs; scanned layers lead with L)
    as [..., out, in]."""
    lead = w.shape[:w.ndim - num_dims]
    dims = w.shape[len(lead):]
    w = w.reshape(*lead, math.prod(dims[:num_in]), math.prod(dims[num_in:]))
    return jnp.swapaxes(w, -1, -2)


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float, axis_name: str, param_dtype):
        self.scale = _param(None, (dim,), (axis_name,), param_dtype, init="ones")
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        # HF order: normalize in f32, cast back, then scale.
        return self.scale.value.astype(x.dtype) * x32.astype(x.dtype)


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, n, k, h, pd = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.param_dtype
        self.q_proj = _param(rngs, (d, n, h), ("embed", "heads", "head_dim"), pd)
        self.k_proj = _param(rngs, (d, k, h), ("embed", "kv_heads", "head_dim"), pd)
        self.v_proj = _param(rngs, (d, k, h), ("embed", "kv_heads", "head_dim"), pd)
        self.o_proj = _param(rngs, (n, h, d), ("heads", "head_dim", "embed"), pd)
        if cfg.qkv_bias:
            self.q_bias = _param(None, (n, h), ("heads", "head_dim"), pd, init="zeros")
            self.k_bias = _param(None, (k, h), ("kv_heads", "head_dim"), pd, init="zeros")
            self.v_bias = _param(None, (k, h), ("kv_heads", "head_dim"), pd, init="zeros")
        if cfg.qk_norm:
            self.q_norm = RMSNorm(h, cfg.rms_norm_eps, "head_dim", pd)
            self.k_norm = RMSNorm(h, cfg.rms_norm_eps, "head_dim", pd)
        self.cfg = cfg

    def _project(self, x_BTD, name, bias, norm, rope):
        # A 2-D matmul against the kernel viewed as [D, heads·H] (a free reshape):
        # the 3-D einsum made XLA:CPU transpose the kernel on every call.
        dt = self.cfg.dtype
        kernel = getattr(self, name)
        b, t, d = x_BTD.shape
        _, heads, h = kernel.value.shape
        y = dense(x_BTD.reshape(b * t, d), kernel.value.astype(dt).reshape(d, heads * h),
                  _copy_out_in(self, name))
        y = y.reshape(b, t, heads, h)
        if bias is not None:
            y = y + bias.value.astype(dt)
        if norm is not None:
            y = norm(y)
        if rope is not None:
            y = apply_rope(y, rope)
        return y

    def __call__(self, x_BTD, rope, mask_BTS, layer, cache_kv, prefix_kv=None):
        """rope: the forward's (cos, sin) tables of the query positions (rope.py)."""
        cfg = self.cfg
        has_bias, has_norm = cfg.qkv_bias, cfg.qk_norm
        q = self._project(x_BTD, "q_proj", self.q_bias if has_bias else None,
                          self.q_norm if has_norm else None, rope)
        k = self._project(x_BTD, "k_proj", self.k_bias if has_bias else None,
                          self.k_norm if has_norm else None, rope)
        v = self._project(x_BTD, "v_proj", self.v_bias if has_bias else None, None, None)
        q = constrain(q, ("activation_batch", "activation_length", "activation_heads", None))
        k_BKHS, v_BKSH = k.transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3)  # cache layout
        if cache_kv is not None:
            cache_k, cache_v, end = cache_kv
            cache_k, k_BKHS = _write_slots(cache_k, k_BKHS, (0, 0, 0, end), layer)
            cache_v, v_BKSH = _write_slots(cache_v, v_BKSH, (0, 0, end, 0), layer)
            k_BKHS, v_BKSH = k_BKHS.astype(q.dtype), v_BKSH.astype(q.dtype)
            cache_kv = (cache_k, cache_v, end)
        if prefix_kv is None and cache_kv is None:  # query slot t = key slot t
            out = attend_causal_blocks(q, k_BKHS, v_BKSH, mask_BTS, cfg.causal_blocks)
        elif prefix_kv is None:
            out = attend(q, k_BKHS, v_BKSH, mask_BTS)
        else:
            prefix_k, prefix_v, prefix_mask = prefix_kv
            out = attend_with_prefix(q, k_BKHS, v_BKSH, mask_BTS,
                                     _layer_view(prefix_k, layer).astype(q.dtype),
                                     _layer_view(prefix_v, layer).astype(q.dtype), prefix_mask)
        b, t, n, h = out.shape
        o_proj = self.o_proj.value.astype(cfg.dtype).reshape(n * h, -1)
        out = dense(out.reshape(b * t, n * h), o_proj, _copy_out_in(self, "o_proj"))
        return out.reshape(b, t, -1), cache_kv


def _layer_view(cache: jax.Array, layer) -> jax.Array:
    """One layer of a cache array: itself (per-layer arrays, layer None) or a slice
    of the stacked [L, ...] array (scanned layers, traced layer index)."""
    return cache if layer is None else jax.lax.dynamic_index_in_dim(cache, layer, 0, False)


def _write_slots(cache: jax.Array, new: jax.Array, start: tuple, layer):
    """Writes `new` into one layer's cache at `start`; returns (cache, that layer)."""
    new = new.astype(cache.dtype)
    if layer is None:
        cache = jax.lax.dynamic_update_slice(cache, new, start)
    else:
        cache = jax.lax.dynamic_update_slice(cache, new[None], (layer,) + start)
    return cache, _layer_view(cache, layer)


def _group_queries(q_BTNH: jax.Array, kv_heads: int) -> jax.Array:
    """[B, T, N, H] → [B, K, G·T, H]: the queries that read kv head k, g-major."""
    b, t, n, h = q_BTNH.shape
    q = q_BTNH.reshape(b, t, kv_heads, n // kv_heads, h).transpose(0, 2, 3, 1, 4)
    return q.reshape(b, kv_heads, -1, h)


def _ungroup(out_BKQH: jax.Array, t: int) -> jax.Array:
    """Inverse of `_group_queries`: [B, K, G·T, H] → [B, T, N, H]."""
    b, kv_heads, q, h = out_BKQH.shape
    out = out_BKQH.reshape(b, kv_heads, q // t, t, h).transpose(0, 3, 1, 2, 4)
    return out.reshape(b, t, -1, h)


def _masked_softmax(logits_BKQS: jax.Array, mask_BTS: jax.Array) -> jax.Array:
    b, kv_heads, q, s = logits_BKQS.shape
    t = mask_BTS.shape[1]
    logits = logits_BKQS.reshape(b, kv_heads, q // t, t, s)
    logits = jnp.where(mask_BTS[:, None, None], logits, _MASKED)
    return jax.nn.softmax(logits, axis=-1).reshape(b, kv_heads, q, s)


def attend(q_BTNH, k_BKHS, v_BKSH, mask_BTS) -> jax.Array:
    """Grouped-query attention on the cache layout; logits and softmax in float32.

    Both contractions are batched matmuls over (row, kv head) with no operand
    transposed: [G·T, H] @ [H, S], then [G·T, S] @ [S, H].
    """
    h = q_BTNH.shape[-1]
    q = _group_queries(q_BTNH, k_BKHS.shape[1])
    logits = jnp.einsum("bkqh,bkhs->bkqs", q, k_BKHS,
                        preferred_element_type=jnp.float32) * (h ** -0.5)
    probs = _masked_softmax(logits, mask_BTS).astype(v_BKSH.dtype)
    out = jnp.einsum("bkqs,bksh->bkqh", probs, v_BKSH)
    return _ungroup(out, q_BTNH.shape[1])


def causal_block_bounds(t: int, max_blocks: int) -> list[tuple[int, int]]:
    """[lo, hi) query rows of each causal block: up to max_blocks equal blocks of at
    least CAUSAL_BLOCK_MIN rows (the last one shorter)."""
    blocks = max(1, min(max_blocks, t // CAUSAL_BLOCK_MIN))
    size = -(-t // blocks)
    return [(lo, min(lo + size, t)) for lo in range(0, t, size)]


def attend_causal_blocks(q_BTNH, k_BKHS, v_BKSH, mask_BTS, max_blocks: int) -> jax.Array:
    """`attend` where query slot t may read key slots 0..t only (mask_BTS is causal).

    The blocks of rows [lo, hi) read keys [0, hi): with n blocks, (n + 1) / 2n of
    the [T, T] logits are computed. On the demo model's train step (2-core AVX2 CPU)
    4 blocks of 72 rows made a 16 × 288 step 19 % faster than one block (547 against
    673 ms), 2 blocks of 80 a 32 × 160 step 13 % faster (579 against 665 ms).
    """
    bounds = causal_block_bounds(q_BTNH.shape[1], max_blocks)
    if len(bounds) == 1:
        return attend(q_BTNH, k_BKHS, v_BKSH, mask_BTS)
    return jnp.concatenate([attend(q_BTNH[:, lo:hi], k_BKHS[..., :hi], v_BKSH[:, :, :hi],
                                   mask_BTS[:, lo:hi, :hi]) for lo, hi in bounds], axis=1)


def attend_with_prefix(q_BTNH, k_BKHS, v_BKSH, mask_BTS, prefix_k_PKHQ, prefix_v_PKQH,
                       prefix_mask_BTQ) -> jax.Array:
    """Attention over a shared prefix (P prompts, Q slots) and each row's own keys.

    One softmax over both parts; rows are grouped r = B / P per prefix row, so
    the prefix matmul sees r·G·T queries per kv head (bigger, fewer matmuls).
    """
    b, t, n, h = q_BTNH.shape
    p, kv_heads, _, slots = prefix_k_PKHQ.shape
    r = b // p
    scale = h ** -0.5
    q = _group_queries(q_BTNH, kv_heads)  # [B, K, G·T, H]
    gt = q.shape[2]

    def to_prefix_rows(x_BKQX):  # [B, K, G·T, X] → [P, K, r·G·T, X]
        x = x_BKQX.reshape(p, r, kv_heads, gt, -1).transpose(0, 2, 1, 3, 4)
        return x.reshape(p, kv_heads, r * gt, -1)

    def from_prefix_rows(x_PKQX):  # inverse of to_prefix_rows
        x = x_PKQX.reshape(p, kv_heads, r, gt, -1).transpose(0, 2, 1, 3, 4)
        return x.reshape(b, kv_heads, gt, -1)

    prefix_logits = from_prefix_rows(jnp.einsum(
        "pkqh,pkhs->pkqs", to_prefix_rows(q), prefix_k_PKHQ,
        preferred_element_type=jnp.float32)) * scale
    own_logits = jnp.einsum("bkqh,bkhs->bkqs", q, k_BKHS,
                            preferred_element_type=jnp.float32) * scale
    probs = _masked_softmax(jnp.concatenate([prefix_logits, own_logits], axis=-1),
                            jnp.concatenate([prefix_mask_BTQ, mask_BTS], axis=-1))
    probs = probs.astype(v_BKSH.dtype)
    out = from_prefix_rows(jnp.einsum("pkqs,pksh->pkqh", to_prefix_rows(probs[..., :slots]),
                                      prefix_v_PKQH))
    out = out + jnp.einsum("bkqs,bksh->bkqh", probs[..., slots:], v_BKSH)
    return _ungroup(out, t)


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, f, pd = cfg.hidden_size, cfg.mlp_dim, cfg.param_dtype
        self.gate_proj = _param(rngs, (d, f), ("embed", "mlp"), pd)
        self.up_proj = _param(rngs, (d, f), ("embed", "mlp"), pd)
        self.down_proj = _param(rngs, (f, d), ("mlp", "embed"), pd)
        self.dtype = cfg.dtype

    def __call__(self, x_BTD):
        # 2-D matmuls: with [B, T, D] @ [D, F], XLA:CPU transposes the SiLU gradient
        # before each dW dot (~20% of a training step, measured in benchmarks/TRAINING.md).
        b, t, d = x_BTD.shape
        dt = self.dtype
        x_ND = x_BTD.reshape(b * t, d)
        gate = dense(x_ND, self.gate_proj.value.astype(dt), _copy_out_in(self, "gate_proj"))
        up = dense(x_ND, self.up_proj.value.astype(dt), _copy_out_in(self, "up_proj"))
        hidden = constrain(jax.nn.silu(gate) * up, ("activation_batch", "activation_mlp"))
        out = dense(hidden, self.down_proj.value.astype(dt), _copy_out_in(self, "down_proj"))
        return out.reshape(b, t, d)


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, "norm", cfg.param_dtype)
        self.attn = Attention(cfg, rngs)
        self.mlp_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, "norm", cfg.param_dtype)
        self.mlp = MLP(cfg, rngs)

    def __call__(self, x_BTD, rope, mask_BTS, layer, cache_kv, prefix_kv=None):
        attn_out, cache_kv = self.attn(self.attn_norm(x_BTD), rope, mask_BTS,
                                       layer, cache_kv, prefix_kv)
        x_BTD = constrain(x_BTD + attn_out, _ACT)
        x_BTD = constrain(x_BTD + self.mlp(self.mlp_norm(x_BTD)), _ACT)
        return x_BTD, cache_kv


def _stack_blocks(blocks: list[Block]) -> Block:
    """One Block whose parameters have a leading 'layers' axis (for lax.scan)."""
    graphdef, first = nnx.split(blocks[0])
    states = [first] + [nnx.state(b) for b in blocks[1:]]
    stacked = jax.tree.map(lambda *vs: vs[0].replace(jnp.stack([v.value for v in vs])),
                           *states, is_leaf=lambda x: isinstance(x, nnx.Variable))
    for _, var in nnx.to_flat_state(stacked):
        var.set_metadata(logical_axes=("layers",) + tuple(var.get_metadata()["logical_axes"]))
    return nnx.merge(graphdef, stacked)


# (weight, input dims, dims) of each module's matmuls, for use_feature_major.
_MATMULS = {
    Attention: (("q_proj", 1, 3), ("k_proj", 1, 3), ("v_proj", 1, 3), ("o_proj", 2, 3)),
    MLP: (("gate_proj", 1, 2), ("up_proj", 1, 2), ("down_proj", 1, 2)),
}


class Transformer(nnx.Module):
    """`model(tokens_BT)` → logits_BTV (float32); with `cache=` → (logits, cache)."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        cfg = config
        self.config = cfg
        self.embed = _param(rngs, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"),
                            cfg.param_dtype)
        blocks = [Block(cfg, rngs) for _ in range(cfg.num_layers)]
        self.layers = _stack_blocks(blocks) if cfg.scan_layers else nnx.List(blocks)
        self.final_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, "norm", cfg.param_dtype)
        if not cfg.tie_word_embeddings:
            self.lm_head = _param(rngs, (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"),
                                  cfg.param_dtype)
        self.feature_major = False  # use_feature_major

    def use_feature_major(self) -> None:
        """Adds an [out, in] copy of every matmul weight (`FeatureMajor`), after which the
        matmuls run feature-major (`dense`): faster on CPU for decode steps of few rows.
        For a model merged inside a jitted call (decode.generate, before its decode
        loop): the copies are made once per call."""
        dt = self.config.dtype
        modules = [m for _, m in nnx.iter_graph(self) if isinstance(m, tuple(_MATMULS))]
        for module in modules:
            kind = next(k for k in _MATMULS if isinstance(module, k))
            for name, num_in, num_dims in _MATMULS[kind]:
                w = getattr(module, name).value.astype(dt)
                setattr(module, f"{name}_out_in", FeatureMajor(_out_in(w, num_in, num_dims)))
        if not self.config.tie_word_embeddings:
            self.lm_head_out_in = FeatureMajor(_out_in(self.lm_head.value.astype(dt), 1, 2))
        self.feature_major = True

    def __call__(self, tokens_BT, *, positions_BT=None, input_mask_BT=None, cache=None,
                 prefix=None, segment_ids_BT=None):
        hidden, cache = self.hidden_states(tokens_BT, positions_BT=positions_BT,
                                           input_mask_BT=input_mask_BT, cache=cache,
                                           prefix=prefix, segment_ids_BT=segment_ids_BT)
        logits = self.logits(hidden)
        return logits if cache is None else (logits, cache)

    def logits(self, hidden_BTD) -> jax.Array:
        dt = self.config.dtype
        b, t, d = hidden_BTD.shape
        if self.feature_major:  # a tied embedding [V, D] is [out, in] already
            w_VD = (self.embed.value.astype(dt) if self.config.tie_word_embeddings
                    else _copy_out_in(self, "lm_head"))
            logits = dense(hidden_BTD.reshape(b * t, d), None, w_VD).reshape(b, t, -1)
        elif self.config.tie_word_embeddings:
            logits = jnp.einsum("btd,vd->btv", hidden_BTD, self.embed.value.astype(dt))
        else:
            logits = hidden_BTD @ self.lm_head.value.astype(dt)
        logits = constrain(logits, ("activation_batch", "activation_length", "activation_vocab"))
        return logits.astype(jnp.float32)

    def hidden_states(self, tokens_BT, *, positions_BT=None, input_mask_BT=None,
                      cache: KVCache | None = None, prefix: KVCache | None = None,
                      segment_ids_BT=None):
        """Final-norm hidden states [B, T, D] (and the updated cache, or None).

        prefix (needs cache): a shared read-only prompt cache, see the module doc.
        segment_ids_BT: packed sequences; a token attends only to keys of its own
          segment. Keys are these T tokens, so a cache must be empty and T slots long
          (a packed prefill); pass positions_BT that restart in each segment.
        """
        cfg = self.config
        b, t = tokens_BT.shape
        if segment_ids_BT is not None and (prefix is not None
                                           or (cache is not None and cache.length != t)):
            raise ValueError("hidden_states: segment_ids need keys = the T tokens (no prefix, "
                             f"no cache or an empty one of {t} slots)")
        if input_mask_BT is None:
            input_mask_BT = jnp.ones((b, t), bool)
        input_mask_BT = input_mask_BT.astype(bool)
        before = jnp.cumsum(input_mask_BT, axis=1, dtype=jnp.int32) - 1
        if prefix is not None and cache is None:
            raise ValueError("hidden_states: prefix= needs a cache for the new tokens")
        if cache is None:
            key_valid_BS = input_mask_BT
            q_slot = jnp.arange(t)
            default_positions = jnp.maximum(before, 0)
        else:
            key_valid_BS = jax.lax.dynamic_update_slice(cache.mask, input_mask_BT, (0, cache.end))
            q_slot = cache.end + jnp.arange(t)
            default_positions = jnp.maximum(cache.num_tokens()[:, None] + before, 0)
        if prefix is not None:
            rows = b // prefix.batch
            default_positions += jnp.repeat(prefix.num_tokens(), rows)[:, None]
        positions_BT = default_positions if positions_BT is None else positions_BT
        k_slot = jnp.arange(key_valid_BS.shape[1])
        allowed_TS = k_slot[None, :] <= q_slot[:, None]
        if cfg.sliding_window is not None:
            allowed_TS &= q_slot[:, None] - k_slot[None, :] < cfg.sliding_window
        mask_BTS = allowed_TS[None] & key_valid_BS[:, None, :]
        if segment_ids_BT is not None:
            mask_BTS &= segment_ids_BT[:, :, None] == segment_ids_BT[:, None, :]
        prefix_kv = None
        if prefix is not None:
            prefix_mask_BQ = jnp.repeat(prefix.mask, rows, axis=0)
            prefix_mask_BTQ = jnp.broadcast_to(prefix_mask_BQ[:, None], (b, t, prefix.length))
            if cfg.sliding_window is not None:  # prefix slots come before every cache slot
                distance_TQ = (prefix.length + q_slot)[:, None] - jnp.arange(prefix.length)
                prefix_mask_BTQ &= (distance_TQ < cfg.sliding_window)[None]
            prefix_kv = (prefix.k, prefix.v, prefix_mask_BTQ)

        x = self.embed.value.astype(cfg.dtype)[tokens_BT]
        x = constrain(x, _ACT)
        cache_kv = None if cache is None else (cache.k, cache.v, cache.end)
        rope = rope_tables(positions_BT, inverse_frequencies(cfg.head_dim, cfg.rope_theta,
                                                             cfg.rope_scaling))
        x, cache_kv = self._run_layers(x, rope, mask_BTS, cache_kv, prefix_kv)
        hidden = self.final_norm(x)
        if cache is not None:
            cache = cache.replace(k=cache_kv[0], v=cache_kv[1], mask=key_valid_BS,
                                  end=cache.end + t)
        return hidden, cache

    def _run_layers(self, x, rope, mask, cache_kv, prefix_kv=None):
        cfg = self.config

        def apply(graphdef, state, x, layer, cache_kv, prefix_kv=prefix_kv):
            return nnx.merge(graphdef, state)(x, rope, mask, layer, cache_kv, prefix_kv)

        if cfg.remat == "full":
            apply = jax.checkpoint(apply, static_argnums=(0,))
        if cfg.scan_layers:
            graphdef, state = nnx.split(self.layers)

            def body(carry, layer_state):
                x, cache_kv, layer = carry
                x, cache_kv = apply(graphdef, layer_state, x, layer, cache_kv)
                return (x, cache_kv, layer + 1), None

            (x, cache_kv, _), _ = jax.lax.scan(body, (x, cache_kv, jnp.int32(0)), state)
            return x, cache_kv
        # Unrolled layers: per-layer cache arrays (kv_cache.py), no layer index.
        new_k, new_v = [], []
        for layer, block in enumerate(self.layers):
            graphdef, state = nnx.split(block)
            layer_kv = None if cache_kv is None else (
                cache_kv[0][layer], cache_kv[1][layer], cache_kv[2])
            layer_prefix = None if prefix_kv is None else (
                prefix_kv[0][layer], prefix_kv[1][layer], prefix_kv[2])
            x, layer_kv = apply(graphdef, state, x, None, layer_kv, layer_prefix)
            if layer_kv is not None:
                new_k.append(layer_kv[0])
                new_v.append(layer_kv[1])
        if cache_kv is not None:
            cache_kv = (tuple(new_k), tuple(new_v), cache_kv[2])
        return x, cache_kv
