"""The jitted hot path: prefill once, then a `lax.while_loop` of one-token steps.

A pure function of (graphdef, params state, arrays, method, static plan); the
`Sampler` jits it once per static plan and shape bucket.

Rows are prompt-major: row r = prompt r // k, sample r % k. Prefix modes:
  "shared"   prompts prefilled once into a read-only prefix cache [B rows] that
             all k continuations attend to (two-cache attention, see
             models/transformer.py); each row's new tokens go to its own cache.
  "repeat"   prompts prefilled once, then the cache rows copied k times.
  "unshared" prompts repeated k times and all B*k rows prefilled (baseline).

Per-row randomness: key(seed) → fold_in(prompt id) → fold_in(sample index) →
fold_in(step), so a row's tokens do not depend on what else is in the batch.

Growing cache: a decode step reads every slot of its cache, empty or not (at
batch 64 attention is about a fifth of a step, benchmarks/SAMPLING.md). So the loop
runs in `Plan.decode_segments` while_loops over a cache that doubles between
them (`segment_lengths`: the slots for new tokens grow c/4 → c/2 → c); each loop
ends when its cache is full, and the cache is padded with masked slots for the
next. Masked slots add exact zeros to attention, so the tokens are the same.

Aligned prompt slots: after the prefill the prompt's cache (the prefix, or the
front of the decode cache) gets masked slots before its first, up to a multiple
of `Plan.slot_multiple`. XLA:CPU's batched attention matmuls are slower over
some slot counts: over 48 prompt slots the benchmark's batch-64 call took 2–4 %
longer than over 64 (benchmarks/SAMPLING.md). Left padding, so positions and
sliding windows are unchanged; the sums over slots run in another order, so
logits can differ in the last float bits (every prefix mode pads the same way,
so their tokens still equal each other).

Feature-major decode steps: with few rows, XLA:CPU's matmuls run faster as
[out, in] @ [in, rows] than as [rows, in] @ [in, out] (benchmarks/SAMPLING.md), so
after the prefill the model gets [out, in] copies of its weights for the decode loop
(`Plan.feature_major_rows`). Other kernels sum in another order, so logits can differ in
the last float bits.

Packed prefill: prompts of mixed lengths leave much of their bucket as padding (a
third for the benchmark's 16–48-token prompts). Given a `Packing`, the prefill runs over
the prompts packed several to a row (padding.pack_prompts; segment ids keep attention
inside each prompt, positions restart in each), and the cache is gathered back into the
left-padded layout, so everything after the prefill is unchanged. The matmuls' rows
are other tokens then, so logits can differ in the last float bits.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx, struct

from gramr2_jax import sharding
from gramr2_jax.models import kv_cache
from gramr2_jax.models.kv_cache import KVCache
from gramr2_jax.sampling import verdict as verdict_lib
from gramr2_jax.sampling.methods import Method
from gramr2_jax.sampling.padding import Packing


@dataclasses.dataclass(frozen=True)
class Plan:
    """Static settings of one compiled generate function (hashable)."""

    num_samples: int
    max_new_tokens: int
    cache_length: int
    stop_ids: tuple[int, ...]
    pad_id: int
    prefix: str  # "shared" | "repeat" | "unshared"
    return_logprobs: bool
    cache_dtype: str
    decode_segments: int  # while_loops over a growing cache (segment_lengths)
    slot_multiple: int  # the prompt's cache slots are front-padded to a multiple of this
    verdict: verdict_lib.Verdict | None = None
    # Decode steps of 2 to this many rows run their matmuls feature-major
    # (Transformer.use_feature_major; faster on CPU); 0 = never.
    feature_major_rows: int = 0


@struct.dataclass
class DecodeState:
    step: jax.Array  # [] index of the most recently sampled token
    last_token_R: jax.Array  # [R] input of the next forward step
    tokens_RN: jax.Array  # [R, N] sampled tokens, pad after the end
    logprobs_RN: jax.Array  # [R, N] raw model log p of each token, 0 after the end
    lengths_R: jax.Array  # [R] tokens generated, stop token included
    done_R: jax.Array  # [R] a stop token was sampled
    cache: KVCache
    verdict: verdict_lib.VerdictState | None


def _constrain_cache(cache: KVCache) -> KVCache:
    def axes(base):  # a stacked cache has a leading layers axis
        return lambda x: sharding.constrain(x, ("layers",) * (x.ndim - 4) + base)

    cache = cache.map_arrays(axes(kv_cache.K_AXES), axes(kv_cache.V_AXES))
    return cache.replace(mask=sharding.constrain(cache.mask, kv_cache.MASK_AXES))


def segment_lengths(used: int, length: int, segments: int, min_new: int = 16) -> tuple[int, ...]:
    """Cache lengths of the decode loops: `used` slots (the prompt's, if in this cache)
    plus new-token slots c/2^(segments-1), ..., c/2, c for c = length - used; halves
    under `min_new` slots are dropped (short generations run one loop)."""
    free = length - used
    halves = (-(-free // 2 ** j) for j in range(segments - 1, 0, -1))
    return tuple(used + h for h in halves if h >= min_new) + (length,)


def cache_layout(shared: bool, prompt_len: int, cache_length: int, segments: int,
                 slot_multiple: int) -> tuple[int, int, tuple[int, ...]]:
    """(aligning slots put before the prompt's, slots of the prefill cache, slots of the
    decode cache in each loop) for a prompt bucket of prompt_len. The decode cache holds
    the prompt too, except when shared (the prompt's cache is then the prefix)."""
    align = -prompt_len % slot_multiple
    if shared:
        return align, prompt_len, segment_lengths(0, cache_length - prompt_len, segments)
    lengths = segment_lengths(prompt_len + align, cache_length + align, segments)
    return align, lengths[0] - align, lengths


def _row_keys(seed: jax.Array, prompt_ids_B: jax.Array, k: int) -> jax.Array:
    base = jax.random.key(seed)
    per_prompt = jax.vmap(lambda p: jax.random.fold_in(base, p))(prompt_ids_B)
    per_row = jax.vmap(lambda key: jax.vmap(lambda j: jax.random.fold_in(key, j))(
        jnp.arange(k)))(per_prompt)
    return per_row.reshape(-1)


def _pick(plan: Plan, method: Method, keys_R: jax.Array, logits_RV: jax.Array,
          s: DecodeState) -> DecodeState:
    """Samples token `s.step` of every row from its logits and records it."""
    active = ~s.done_R
    if s.verdict is not None:
        s = s.replace(verdict=verdict_lib.observe(plan.verdict, s.verdict, logits_RV, active))
    step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys_R, s.step)
    token = jax.vmap(method.sample)(step_keys, logits_RV)
    out_token = jnp.where(active, token, plan.pad_id)
    tokens = jax.lax.dynamic_update_slice(s.tokens_RN, out_token[:, None], (0, s.step))
    logprobs = s.logprobs_RN
    if plan.return_logprobs:
        logp = (jnp.take_along_axis(logits_RV, token[:, None], axis=1)
                - jax.nn.logsumexp(logits_RV, axis=1, keepdims=True))
        logp = jnp.where(active[:, None], logp, 0.0)
        logprobs = jax.lax.dynamic_update_slice(logprobs, logp, (0, s.step))
    stop = jnp.isin(token, jnp.asarray(plan.stop_ids, jnp.int32)) if plan.stop_ids else False
    verdict = None if s.verdict is None else verdict_lib.push(s.verdict, token)
    return s.replace(last_token_R=token, tokens_RN=tokens, logprobs_RN=logprobs,
                     lengths_R=s.lengths_R + active, done_R=s.done_R | (active & stop),
                     verdict=verdict)


def _prefill(model, tokens_BP: jax.Array, mask_BP: jax.Array, packed: Packing | None,
             length: int, align: int, dtype) -> tuple[jax.Array, KVCache]:
    """The prompts' last hidden states [B, D] and their left-padded cache: `align`
    masked slots, then the P prompt slots (end), then empty ones up to align + length.
    From the padded batch, or from packed rows gathered straight into that layout."""
    if packed is None:
        cache = KVCache.zeros(model.config, tokens_BP.shape[0], length, dtype=dtype)
        hidden, cache = model.hidden_states(tokens_BP, input_mask_BT=mask_BP,
                                            cache=_constrain_cache(cache))
        if align:
            cache = _constrain_cache(cache.pad_front(align))
        return hidden[:, -1], cache
    rows, width = packed.tokens_GW.shape
    cache = KVCache.zeros(model.config, rows, width, dtype=dtype)
    hidden, cache = model.hidden_states(
        packed.tokens_GW, positions_BT=packed.positions_GW,
        input_mask_BT=packed.segments_GW > 0, segment_ids_BT=packed.segments_GW,
        cache=_constrain_cache(cache))
    front = ((0, 0), (align, 0))  # aligning slots read any packed slot, masked
    cache = cache.gather(jnp.pad(packed.row_BP, front), jnp.pad(packed.col_BP, front),
                         jnp.pad(mask_BP, front))
    cache = _constrain_cache(cache)
    if align + length > cache.length:
        cache = _constrain_cache(cache.grow(align + length))
    return hidden[packed.row_BP[:, -1], packed.col_BP[:, -1]], cache


def generate(graphdef: nnx.GraphDef, params: nnx.State, tokens_BP: jax.Array,
             mask_BP: jax.Array, prompt_ids_B: jax.Array, seed: jax.Array,
             method: Method, plan: Plan, packed: Packing | None = None,
             num_prompts: jax.Array | None = None) -> dict[str, jax.Array]:
    """Prefill + decode. Returns the final DecodeState's outputs as a dict.

    packed: the same prompts packed several to a row (padding.pack_prompts) for the
    prefill; not with prefix "unshared", which prefills every row.
    num_prompts: prompts from this one on are dummy rows (the Sampler's batch padding):
    done from the start, so they never keep the loop running. None = all are real.
    """
    model = nnx.merge(graphdef, params)
    k, n = plan.num_samples, plan.max_new_tokens
    keys_R = _row_keys(seed, prompt_ids_B, k)
    cache_dtype = jnp.dtype(plan.cache_dtype)
    if plan.prefix == "unshared":
        if packed is not None:
            raise ValueError("generate: prefix 'unshared' prefills every row; no packing")
        tokens_BP, mask_BP = jnp.repeat(tokens_BP, k, axis=0), jnp.repeat(mask_BP, k, axis=0)
    shared = plan.prefix == "shared"
    align, prefill_len, lengths = cache_layout(shared, tokens_BP.shape[1], plan.cache_length,
                                               plan.decode_segments, plan.slot_multiple)
    last_BD, cache = _prefill(model, tokens_BP, mask_BP, packed, prefill_len, align,
                              cache_dtype)
    logits_RV = model.logits(last_BD[:, None])[:, 0]  # only the last position is needed
    prefix = None
    if plan.prefix != "unshared":
        logits_RV = jnp.repeat(logits_RV, k, axis=0)
        tokens_BP, mask_BP = jnp.repeat(tokens_BP, k, axis=0), jnp.repeat(mask_BP, k, axis=0)
    if plan.prefix == "repeat":
        cache = _constrain_cache(cache.repeat(k))
    elif shared:
        prefix = cache
        cache = _constrain_cache(KVCache.zeros(model.config, logits_RV.shape[0], lengths[0],
                                               cache_dtype))
    rows = logits_RV.shape[0]
    done_R = jnp.zeros((rows,), bool) if num_prompts is None else jnp.arange(rows) >= num_prompts * k
    state = DecodeState(
        step=jnp.int32(0), last_token_R=jnp.zeros((rows,), jnp.int32),
        tokens_RN=jnp.full((rows, n), plan.pad_id, jnp.int32),
        logprobs_RN=jnp.zeros((rows, n), jnp.float32),
        lengths_R=jnp.zeros((rows,), jnp.int32), done_R=done_R, cache=cache,
        verdict=None if plan.verdict is None else verdict_lib.init_state(
            plan.verdict, tokens_BP, mask_BP))
    state = _pick(plan, method, keys_R, logits_RV, state)
    if 1 < rows <= plan.feature_major_rows:  # after the prefill, whose matmuls have many rows
        model.use_feature_major()

    def cond(s: DecodeState) -> jax.Array:
        return (s.step + 1 < n) & ~jnp.all(s.done_R) & (s.cache.end < s.cache.length)

    def body(s: DecodeState) -> DecodeState:
        # Default positions: real tokens so far (prefix + own cache) per row.
        hidden, cache = model.hidden_states(s.last_token_R[:, None], cache=s.cache,
                                            prefix=prefix)
        logits_RV = model.logits(hidden)[:, 0]
        return _pick(plan, method, keys_R, logits_RV,
                     s.replace(step=s.step + 1, cache=_constrain_cache(cache)))

    for i, length in enumerate(lengths):  # each loop stops when its cache is full
        if i:
            state = state.replace(cache=_constrain_cache(state.cache.grow(length)))
        state = jax.lax.while_loop(cond, body, state)
    out = dict(tokens=state.tokens_RN, lengths=state.lengths_R, stopped=state.done_R)
    if plan.return_logprobs:
        out["logprobs"] = state.logprobs_RN
    if state.verdict is not None:
        out["verdict_probs"] = verdict_lib.probs(state.verdict)
        out["verdict_logprobs"] = verdict_lib.logprobs(state.verdict)
        out["verdict_found"] = state.verdict.found_R
    return out
