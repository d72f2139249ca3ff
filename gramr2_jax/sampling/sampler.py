"""`Sampler`: the host-side API around the jitted decode loop (decode.py).

The sampler is stateless: static settings plus the model split into
(graphdef, params). Each `generate` call tokenizes, left-pads into a length
bucket (padding.py), runs one compiled function and returns numpy results.
Compiled shapes: one per (prompt bucket, #prompts, k, max_new_tokens, method
class, static method sizes such as top_k); temperature, top_p and the seed are
traced, so changing them never recompiles. batch_bucket bounds the #prompts.
`compile_ahead` compiles the shapes of coming calls in a background thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gramr2_jax import compile_ahead, sharding
from gramr2_jax.sampling import decode, scoring
from gramr2_jax.sampling.methods import Method, make_method
from gramr2_jax.sampling.padding import (
    Packing,
    Prompt,
    bucket_length,
    left_pad,
    pack_prompts,
    padded_count,
    tokenize,
)
from gramr2_jax.sampling.verdict import Verdict


@dataclasses.dataclass(frozen=True)
class SampleOutput:
    """Rows are prompt-major: row r holds sample `sample_index[r]` of `prompt_index[r]`.

    tokens    [R, N] int32  generated ids; the stop token is included, then pad_id.
    lengths   [R]    int32  generated tokens per row, stop token included.
    stopped   [R]    bool   the row ended with a stop token (else: max tokens / cache full).
    logprobs  [R, N] f32    RAW model log p(token | context): temperature 1, no top-k/p
                            truncation (what the judge needs); 0 after the end.
    texts     decoded rows WITHOUT the stop token (None without a tokenizer).
    verdict_probs [R, C] softmax over the candidate logits at the first trigger
                  (NaN where the trigger never came); see verdict.py.
    verdict_logprobs [R, C] their logs, which do not round to 0 or 1 (log-odds of "A"
                     against "B" = column 0 minus column 1).
    """

    tokens: np.ndarray
    lengths: np.ndarray
    stopped: np.ndarray
    logprobs: np.ndarray | None
    prompt_index: np.ndarray
    sample_index: np.ndarray
    texts: list[str] | None = None
    verdict_probs: np.ndarray | None = None
    verdict_logprobs: np.ndarray | None = None
    verdict_found: np.ndarray | None = None


def _key_seed(seed: int) -> jax.Array:
    """Any Python int as the uint32 seed of the random key: seeds equal modulo 2**32 give
    the same samples, and 0 <= seed < 2**31 gives jax.random.key(seed) itself. (Callers
    derive seeds, e.g. seed · 1000 + round; an int32 overflowed from config.seed 3 on.)"""
    return jnp.uint32(int(seed) % (1 << 32))


@dataclasses.dataclass(frozen=True)
class _Call:
    args: tuple[Any, ...]  # decode.generate's arguments but the last (the real prompts)
    num: int  # real prompts; the rest of the batch is dummy rows
    key: tuple  # what selects the compiled function


# The most rows at which a CPU decode step runs feature-major by default: the benchmark's
# calls ran 1.3-1.5x faster at 8-32 rows, no faster at 64 (benchmarks/SAMPLING.md).
FEATURE_MAJOR_ROWS = 32


class Sampler:
    """Batched sampling and teacher-forced scoring for a `Transformer`.

    min_prompt_bucket: the smallest prompt bucket (padding.bucket_length; bounds recompiles).
    cache_length: None sizes the cache as prompt bucket + max_new_tokens; a fixed
      value instead stops generation when the cache is full.
    batch_multiple: pad the prompt count to a multiple, so the batch shards evenly;
      None = the mesh's data × fsdp size (1 without a mesh). Dummy rows (a pad token
      each) are done from the start, so they never keep decoding, and dropped from results.
    batch_bucket: first pad the prompt count to padding.padded_count(num, batch_bucket)
      (a power of two up to batch_bucket), so a caller that works through a list
      batch_bucket prompts at a time compiles at most log2(batch_bucket) + 1 batch
      shapes, whatever its last chunk's size; None = no such padding.
    decode_segments: decode in up to this many loops over a cache that doubles
      between them (decode.segment_lengths), so early steps read fewer empty
      slots; 1 = one loop over the full cache. Same tokens; more to compile.
    cache_slot_multiple: the prompt's cache slots are front-padded (masked) to a
      multiple of this after the prefill (decode.py); 1 = none.
    pack_prompts: prefill prompts of mixed lengths packed several to a row of 1, 1.5
      or 2 buckets (padding.pack_prompts), when that saves rows; the cache is
      then unpacked to the usual layout. Same tokens; fewer padding tokens computed.
    feature_major_rows: decode steps of 2 to this many rows run their matmuls
      feature-major (decode.py; [out, in] weight copies made once per call); None =
      FEATURE_MAJOR_ROWS on a CPU backend without a mesh, else 0 (off).
    mesh/rules: shard params by the logical-axis rules, the cache's batch over
      data/fsdp and its kv heads over tensor.
    """

    def __init__(self, model: nnx.Module, tokenizer=None, *, min_prompt_bucket: int = 16,
                 cache_length: int | None = None, cache_dtype=None, batch_multiple: int | None = None,
                 batch_bucket: int | None = None, decode_segments: int = 3,
                 cache_slot_multiple: int = 32, pack_prompts: bool = True,
                 feature_major_rows: int | None = None,
                 mesh: jax.sharding.Mesh | None = None, rules=None):
        if batch_bucket is not None and batch_bucket < 1:
            raise ValueError(f"batch_bucket: must be >= 1 or None, got {batch_bucket}")
        if decode_segments < 1:
            raise ValueError(f"decode_segments: must be >= 1, got {decode_segments}")
        if cache_slot_multiple < 1:
            raise ValueError(f"cache_slot_multiple: must be >= 1, got {cache_slot_multiple}")
        self.config = model.config
        self.tokenizer = tokenizer
        self.min_prompt_bucket = min_prompt_bucket
        self.cache_length = cache_length
        self.cache_dtype = jnp.dtype(cache_dtype or self.config.dtype).name
        if batch_multiple is None:
            batch_multiple = 1 if mesh is None else mesh.shape["data"] * mesh.shape["fsdp"]
        self.batch_multiple = batch_multiple
        self.batch_bucket = batch_bucket
        self.decode_segments = decode_segments
        self.cache_slot_multiple = cache_slot_multiple
        self.pack_prompts = pack_prompts
        if feature_major_rows is not None and feature_major_rows < 0:
            raise ValueError(f"feature_major_rows: must be >= 0 or None, got {feature_major_rows}")
        if feature_major_rows is None:
            on_cpu = jax.default_backend() == "cpu" and mesh is None
            feature_major_rows = FEATURE_MAJOR_ROWS if on_cpu else 0
        self.feature_major_rows = feature_major_rows
        self.mesh, self.rules = mesh, rules
        self.graphdef, params = nnx.split(model)
        self.params = self._place(params)
        # One jitted function per sampler: its cache is keyed by the static plan
        # and shapes; the sharding rules are fixed per sampler (read at trace time).
        self._generate = jax.jit(decode.generate, static_argnums=(0, 7))
        self._compiles = compile_ahead.Compiles()  # shape key -> compiled (compile_ahead)
        self._score = jax.jit(scoring.token_logprobs, static_argnums=(0, 5))

    # ------------------------------------------------------------------ helpers

    def _place(self, params: nnx.State) -> nnx.State:
        if self.mesh is None:
            return params
        return jax.device_put(params, sharding.state_shardings(params, self.mesh, self.rules))

    def _context(self):
        stack = contextlib.ExitStack()
        if self.mesh is not None:
            stack.enter_context(jax.set_mesh(self.mesh))
        stack.enter_context(sharding.use_rules(self.rules))
        return stack

    def _batch_input(self, x: np.ndarray) -> jax.Array:
        if self.mesh is None:
            return jnp.asarray(x)
        names = ("activation_batch",) + (None,) * (x.ndim - 1)
        spec = sharding.logical_to_spec(names, x.shape, dict(self.mesh.shape), self.rules)
        return jax.device_put(x, jax.sharding.NamedSharding(self.mesh, spec))

    @property
    def pad_id(self) -> int:
        for source in (self.tokenizer, self.config):
            pad = getattr(source, "pad_token_id", None)
            if pad is not None:
                return int(pad)
        return 0

    def default_stop_tokens(self) -> tuple[int, ...]:
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if eos is not None:
            return tuple(eos) if isinstance(eos, (list, tuple)) else (int(eos),)
        return self.config.eos_ids

    def _pad_prompts(self, ids: list[list[int]], extra: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Left-padded prompts (+ dummy rows up to batch_bucket's padded count, then to
        batch_multiple) and their count. A dummy is one pad token: it never grows the
        length bucket, and packs beside the prompts."""
        if not ids:
            raise ValueError("prompts: expected at least one prompt")
        if any(len(p) == 0 for p in ids):
            raise ValueError("prompts: every prompt needs at least one token (e.g. BOS)")
        num = len(ids)
        rows = num if self.batch_bucket is None else padded_count(num, self.batch_bucket)
        rows += -rows % self.batch_multiple
        ids = ids + [[self.pad_id]] * (rows - num)
        length = bucket_length(max(len(p) for p in ids), self.min_prompt_bucket)
        if self.cache_length is not None and length + extra > self.cache_length:
            raise ValueError(f"prompts: bucket {length} + {extra} does not fit "
                             f"cache_length={self.cache_length}")
        tokens, mask = left_pad(ids, length, self.pad_id)
        return tokens, mask, num

    def _packing(self, tokens: np.ndarray, mask: np.ndarray) -> Packing | None:
        """The padded prompts packed into rows of 1, 1.5 or 2 buckets, whichever computes
        the fewest tokens (the narrowest on a tie: attention costs the row width per
        token); None if none saves rows. Row counts are rounded to an eighth of the batch
        (and to batch_multiple): at most 8 shapes per bucket and width."""
        rows, width = tokens.shape
        multiple = -(-rows // 8)
        multiple = -(-multiple // self.batch_multiple) * self.batch_multiple
        seqs = [t[m] for t, m in zip(tokens, mask)]
        widths = (width, width * 3 // 2, 2 * width) if width % 2 == 0 else (width, 2 * width)
        options = [pack_prompts(seqs, w, self.pad_id, multiple, width) for w in widths]
        options = [p for p in options if p is not None]
        if not options:
            return None
        best = min(options, key=lambda p: p.tokens_GW.size)  # first (narrower) on a tie
        if best.tokens_GW.size >= tokens.size:
            return None
        return jax.tree.map(self._batch_input, best)

    # ------------------------------------------------------------------ API

    def generate(self, prompts: Sequence[Prompt], *, max_new_tokens: int,
                 temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, method: Method | None = None,
                 num_samples: int = 1, seed: int = 0,
                 stop_tokens: Sequence[int] | None = None, return_logprobs: bool = True,
                 prompt_ids: Sequence[int] | None = None, verdict: Verdict | None = None,
                 prefix: str = "shared", params: nnx.State | None = None) -> SampleOutput:
        """Samples `num_samples` continuations of every prompt.

        prompts: strings (tokenized with the tokenizer, BOS as it adds it) or id lists.
        method: overrides temperature/top_k/top_p (temperature 0 = greedy).
        stop_tokens: None = the tokenizer's (else the config's) EOS ids; () = none.
        seed: any int (reduced modulo 2**32).
        prompt_ids: per-prompt ids for the random keys (default 0..B-1); give a
          prompt the same id and seed to get the same samples in any batch.
        prefix: "shared" (default) prefills each prompt once and its k samples
          attend to that one copy; "repeat" copies the prompt cache k times;
          "unshared" prefills all rows (the baselines of the benchmark).
        params: a state with the model's structure (e.g. updated weights);
          reuses the compiled function.
        """
        call = self._prepare(
            prompts, max_new_tokens=max_new_tokens, method=method or make_method(
                temperature, top_k, top_p), num_samples=num_samples, seed=seed,
            stop_tokens=stop_tokens, return_logprobs=return_logprobs, prompt_ids=prompt_ids,
            verdict=verdict, prefix=prefix, params=params)
        self._compiles.wait(call.key)  # a compile_ahead thread compiling it: use its result
        with self._context():
            out = self._generate(*call.args, jnp.int32(call.num))
        num = call.num
        rows = num * num_samples
        out = {name: np.asarray(value)[:rows] for name, value in out.items()}
        texts = None
        if self.tokenizer is not None:
            texts = [self.tokenizer.decode(row[:n - s].tolist())
                     for row, n, s in zip(out["tokens"], out["lengths"], out["stopped"])]
        return SampleOutput(
            tokens=out["tokens"], lengths=out["lengths"], stopped=out["stopped"],
            logprobs=out.get("logprobs"), texts=texts,
            prompt_index=np.repeat(np.arange(num), num_samples),
            sample_index=np.tile(np.arange(num_samples), num),
            verdict_probs=out.get("verdict_probs"), verdict_logprobs=out.get("verdict_logprobs"),
            verdict_found=out.get("verdict_found"))

    def compile_ahead(self, prompt_batches: Iterable[Sequence[Prompt]], *, max_new_tokens: int,
                      method: Method, num_samples: int = 1,
                      stop_tokens: Sequence[int] | None = None, return_logprobs: bool = True,
                      verdict: Verdict | None = None, prefix: str = "shared"
                      ) -> threading.Thread | None:
        """Compiles, in a background thread, what `generate` calls of these prompt
        batches with these arguments will need, one new shape after another, so the
        compiles overlap the calls before them. Returns the (daemon) thread.

        prompt_batches is read in the thread, so it may be a generator that does the
        tokenizing. A `generate` call whose shape the thread is compiling waits for it;
        one the thread has not reached yet compiles it as usual. The thread only lowers
        and compiles (jit's ahead-of-time path, whose result the jitted call then finds
        in JAX's caches); it runs nothing, so it cannot interleave with the calls'
        collectives. Results do not change: the calls run the same function. With several
        JAX processes it does nothing (returns None; not tested there).
        """
        if jax.process_count() > 1:
            return None
        kwargs = dict(max_new_tokens=max_new_tokens, method=method, num_samples=num_samples,
                      seed=0, stop_tokens=stop_tokens, return_logprobs=return_logprobs,
                      prompt_ids=None, verdict=verdict, prefix=prefix, params=None)
        def compile_one(call: _Call) -> None:
            with self._context():
                self._generate.lower(*call.args, jnp.int32(call.num)).compile()

        return self._compiles.start(
            (self._prepare(prompts, **kwargs) for prompts in prompt_batches),
            key=lambda call: call.key, compile_one=compile_one, name="gramr2-compile-ahead",
            what="generate calls")

    def _prepare(self, prompts: Sequence[Prompt], *, max_new_tokens: int, method: Method,
                 num_samples: int, seed: int, stop_tokens: Sequence[int] | None,
                 return_logprobs: bool, prompt_ids: Sequence[int] | None,
                 verdict: Verdict | None, prefix: str, params: nnx.State | None) -> _Call:
        """The padded, packed, placed arguments of one generate call, and their shape key."""
        if max_new_tokens < 1 or num_samples < 1:
            raise ValueError("max_new_tokens and num_samples must be >= 1")
        if prefix not in ("shared", "repeat", "unshared"):
            raise ValueError(f"prefix: expected 'shared', 'repeat' or 'unshared', got {prefix!r}")
        stop = self.default_stop_tokens() if stop_tokens is None else tuple(stop_tokens)
        ids = tokenize(prompts, self.tokenizer, add_special_tokens=True)
        tokens, mask, num = self._pad_prompts(ids, 1)
        cache_length = self.cache_length or tokens.shape[1] + max_new_tokens
        plan = decode.Plan(num_samples=num_samples, max_new_tokens=max_new_tokens,
                           cache_length=cache_length, stop_ids=tuple(int(t) for t in stop),
                           pad_id=self.pad_id, prefix=prefix,
                           return_logprobs=return_logprobs, cache_dtype=self.cache_dtype,
                           verdict=verdict, decode_segments=self.decode_segments,
                           slot_multiple=self.cache_slot_multiple,
                           feature_major_rows=self.feature_major_rows)
        pids = np.arange(num) if prompt_ids is None else np.asarray(prompt_ids)
        if pids.shape != (num,):
            raise ValueError(f"prompt_ids: expected {num} ids, got shape {pids.shape}")
        pids = np.concatenate([pids, np.full(tokens.shape[0] - num, -1)]).astype(np.int32)
        params = self.params if params is None else self._place(params)
        with self._context():
            packed = (self._packing(tokens, mask)
                      if self.pack_prompts and prefix != "unshared" else None)
            args = (self.graphdef, params, self._batch_input(tokens), self._batch_input(mask),
                    jnp.asarray(pids), _key_seed(seed), method, plan, packed)
        # What selects the compiled function: the static plan and the dynamic
        # arguments' structure and shapes (params are the sampler's own or alike).
        dynamic = (tokens, packed, method)
        key = (plan, jax.tree.structure(dynamic),
               tuple((np.shape(x), np.result_type(x).name) for x in jax.tree.leaves(dynamic)))
        return _Call(args=args, num=num, key=key)

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Prompt], *,
              params: nnx.State | None = None) -> scoring.ScoreOutput:
        """Teacher-forced log p(continuation | prompt) per row (sum and per token).

        String continuations are tokenized on their own, without special tokens;
        pass ids (e.g. `SampleOutput.tokens[r, :lengths[r]]`) to score exactly
        what was sampled.
        """
        if len(prompts) != len(continuations):
            raise ValueError(f"score: {len(prompts)} prompts but {len(continuations)} "
                             "continuations")
        prompt_ids = tokenize(prompts, self.tokenizer, add_special_tokens=True)
        cont_ids = tokenize(continuations, self.tokenizer, add_special_tokens=False,
                            what="continuations")
        if any(len(p) == 0 for p in prompt_ids):
            raise ValueError("prompts: every prompt needs at least one token (e.g. BOS)")
        tokens, mask, num = self._pad_prompts([p + c for p, c in zip(prompt_ids, cont_ids)], 0)
        cont_lengths = np.array([len(c) for c in cont_ids] + [0] * (tokens.shape[0] - num),
                                np.int32)
        # Continuations are right-aligned, so only the last `width` positions matter.
        width = min(bucket_length(int(cont_lengths.max()), self.min_prompt_bucket),
                    tokens.shape[1] - 1)
        params = self.params if params is None else self._place(params)
        with self._context():
            logp = self._score(self.graphdef, params, self._batch_input(tokens),
                               self._batch_input(mask), jnp.asarray(cont_lengths), width)
        return scoring.ScoreOutput.from_token_logprobs(np.asarray(logp)[:num],
                                                       cont_lengths[:num])
