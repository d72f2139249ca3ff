"""The decode step against its own matmuls: how much of a step the products take, ours and torch's.

    python -m gramr2_jax.benchmarks.decode_bound [--quick] [--out FILE]

The sampling benchmark's model, prompts and sampling settings. At each of its batch sizes,
one run measures (JSON):
  decode_step_ms      our sampler's decode step: (a call with N new tokens - a call with 1)
                      / (N - 1), medians of 3 calls each (as the sampling benchmark's
                      profile_largest_batch);
  products_ms         one decode step's matmuls and nothing else, on the model's own weights
                      and in the layout the sampler uses at that batch (feature-major copies
                      for 2..Sampler.feature_major_rows rows): per layer q, k, v from x, o
                      from q + k + v (heads tiled), gate and up from x, down from
                      silu(gate)·up, an RMS rescale, then the tied logits. A jitted loop of
                      steps, best of 5;
  torch_products_ms   the peer: the same chain through torch `F.linear` on the transformers
                      model's own weights, in the thread count the sampling benchmark picks.
products_share = products_ms / decode_step_ms; the rest of a step is attention, sampling,
cache writes and small ops. products_fraction_of_peak: the products' FLOP/s over the best f32
matmul rate measured before and after the runs (`common.record_peak`). Where the
products alone run under a target's rate, no change outside them reaches it.
"""

from __future__ import annotations

import functools
import os
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gramr2_jax import hostmem
from gramr2_jax.benchmarks import sampling as sampling_bench
from gramr2_jax.benchmarks.common import (
    best_seconds,
    json_main,
    machine,
    matmul_peak_flops,
    record_peak,
)
from gramr2_jax.models import transformer
from gramr2_jax.sampling import Sampler


def _step_jax(model, x_MD: jax.Array) -> jax.Array:
    """One decode step's products on the model's weights (`transformer.dense`, which takes the
    feature-major copies when the model has them); returns the next step's input."""
    cfg = model.config
    d = x_MD.shape[1]
    groups = cfg.num_heads // cfg.num_kv_heads

    def project(attn, name, x):
        kernel = getattr(attn, name).value.astype(cfg.dtype)
        return transformer.dense(x, kernel.reshape(kernel.shape[0], -1),
                                 transformer._copy_out_in(attn, name))

    for block in model.layers:
        attn, mlp = block.attn, block.mlp
        q, k, v = (project(attn, name, x_MD) for name in ("q_proj", "k_proj", "v_proj"))
        mixed = q + jnp.tile(k, (1, groups)) + jnp.tile(v, (1, groups))
        o_proj = attn.o_proj.value.astype(cfg.dtype).reshape(-1, d)
        x_MD = x_MD + transformer.dense(mixed, o_proj, transformer._copy_out_in(attn, "o_proj"))
        gate, up = (transformer.dense(x_MD, getattr(mlp, name).value.astype(cfg.dtype),
                                      transformer._copy_out_in(mlp, name))
                    for name in ("gate_proj", "up_proj"))
        x_MD = x_MD + transformer.dense(jax.nn.silu(gate) * up,
                                        mlp.down_proj.value.astype(cfg.dtype),
                                        transformer._copy_out_in(mlp, "down_proj"))
        x_MD = x_MD * jax.lax.rsqrt(jnp.mean(x_MD * x_MD, axis=-1, keepdims=True) + 1e-6)
    logits = model.logits(x_MD[:, None])[:, 0]
    return x_MD + 1e-3 * logits[:, :d]


def products_jax(graphdef, params, x_MD: jax.Array, *, steps: int, feature_major: bool):
    """`steps` decode steps' products (jit with steps and feature_major static)."""
    model = nnx.merge(graphdef, params)
    if model.config.scan_layers:
        raise ValueError("decode_bound: a model with scanned layers is not supported")
    if feature_major:  # as decode.generate does before its decode loop
        model.use_feature_major()
    return jax.lax.fori_loop(0, steps, lambda _, x: _step_jax(model, x), x_MD)


products_jax_jit = jax.jit(products_jax, static_argnums=(0,),
                           static_argnames=("steps", "feature_major"))


def products_torch(hf_model, x, *, steps: int):
    """The same chain as `products_jax` through `F.linear` on the transformers weights."""
    import torch
    import torch.nn.functional as F

    cfg = hf_model.config
    groups = cfg.num_attention_heads // cfg.num_key_value_heads
    embed = hf_model.get_output_embeddings().weight
    with torch.no_grad():
        for _ in range(steps):
            for layer in hf_model.model.layers:
                attn, mlp = layer.self_attn, layer.mlp
                q, k, v = (F.linear(x, p.weight) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
                x = x + F.linear(q + k.repeat(1, groups) + v.repeat(1, groups), attn.o_proj.weight)
                gate, up = F.linear(x, mlp.gate_proj.weight), F.linear(x, mlp.up_proj.weight)
                x = x + F.linear(F.silu(gate) * up, mlp.down_proj.weight)
                x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
            x = x + 1e-3 * F.linear(x, embed)[:, :x.shape[1]]
    return x


def _run_jax(graphdef, params, x, steps: int, feature_major: bool) -> None:
    jax.block_until_ready(products_jax_jit(graphdef, params, x, steps=steps,
                                           feature_major=feature_major))


def _run_torch(hf_model, x, steps: int) -> None:
    products_torch(hf_model, x, steps=steps)
    sampling_bench._sync_torch()


def run(spec: dict, steps: int) -> dict:
    import torch

    rng = np.random.default_rng(0)
    report: dict = {"backend": jax.default_backend(), "devices": jax.device_count(),
                    "machine": machine(), "load_average": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        hf_model, model = sampling_bench._make_models(spec["hf"], pathlib.Path(tmp))
    cfg = model.config
    sampler = Sampler(model)
    peak_before = matmul_peak_flops(n=spec["peak_n"])
    report["torch_threads"] = sampling_bench._torch_threads(hf_model, cfg.vocab_size)
    graphdef, params = nnx.split(model)
    # Every matmul weight once per row (norm scales, counted in N_body, are negligible).
    flops_per_row = 2.0 * sum(sampling_bench._body_and_head_params(cfg))
    n, (lo, hi) = spec["new_tokens"], spec["prompt_lengths"]
    rows = []
    for batch in spec["batches"]:
        prompts = [rng.integers(3, cfg.vocab_size, rng.integers(lo, hi + 1)).tolist()
                   for _ in range(batch)]
        _, step_s = sampling_bench._prefill_and_step_seconds(
            sampler, prompts, n, sampling_bench._ours_seconds(sampler, prompts, n))
        feature_major = 1 < batch <= sampler.feature_major_rows
        x = jax.random.normal(jax.random.key(batch), (batch, cfg.hidden_size), jnp.float32)
        ours_s = best_seconds(functools.partial(_run_jax, graphdef, params, x, steps,
                                                feature_major)) / steps
        x_torch = torch.from_numpy(np.array(x)).to(hf_model.device)  # a writable copy
        torch_s = best_seconds(functools.partial(_run_torch, hf_model, x_torch, steps)) / steps
        rows.append(dict(batch=batch, feature_major=feature_major,
                         decode_step_ms=round(step_s * 1e3, 3),
                         products_ms=round(ours_s * 1e3, 3),
                         torch_products_ms=round(torch_s * 1e3, 3),
                         products_share=round(ours_s / step_s, 3),
                         products_speedup_vs_torch=round(torch_s / ours_s, 3),
                         products_gflops=round(flops_per_row * batch / ours_s / 1e9, 1),
                         torch_products_gflops=round(flops_per_row * batch / torch_s / 1e9, 1)))
    peak = record_peak(report, peak_before, matmul_peak_flops(n=spec["peak_n"]))
    for row in rows:
        row["products_fraction_of_peak"] = round(row["products_gflops"] * 1e9 / peak, 3)
    report["rows"] = rows
    return report


def main(argv: list[str] | None = None) -> dict:
    return json_main(__doc__.splitlines()[0], argv, lambda quick: run(
        sampling_bench.QUICK if quick else sampling_bench.FULL, steps=2 if quick else 16))


if __name__ == "__main__":
    hostmem.configure_process()
    main()
