"""Sampling throughput vs transformers `generate`, FLOP/s vs matmul peak, prefix sharing.

    python -m gramr2_jax.benchmarks.sampling [--quick] [--out FILE]

Everything is measured in one run and printed as JSON. Both sides run the SAME
random weights (a transformers Llama is built, saved, and loaded here with
from_pretrained), the same left-padded prompts, sampling with temperature 1,
top-k 50 then top-p 0.95, and a fixed number of new tokens (no stop tokens); both
return the tokens only (ours with return_logprobs=False, as the judge labels).
Each side: one warm-up call, then the median of 3 timed calls. variants: our side
alone at the largest batch, the default against one change each (best of 3
alternated calls): one decode loop over the full cache, no aligned prompt slots,
the prefill over the padded batch instead of packed prompts, per-token logprobs
returned. feature_major: at each batch of 2 to `Sampler.feature_major_rows` rows, the
default against decode steps with the usual matmul layout (best of 3 alternated calls).

FLOPs counted per call (prefill + decode), padding excluded:
  prefill: per real prompt token 2·N_body + 4·L·N·H·ctx, plus 2·V·D once per
           row (logits only at the last position);
  decode:  per generated token 2·(N_body + V·D) + 4·L·N·H·ctx,
where N_body = non-embedding parameters, ctx = the token's real context length
(attention QKᵀ and PV), L layers, N·H = query heads × head dim.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import jax
import numpy as np

from gramr2_jax import hostmem
from gramr2_jax.benchmarks.common import (
    json_main,
    machine,
    matmul_peak_flops,
    record_peak,
    timeit,
    torch_device,
)
from gramr2_jax.models import ModelConfig, from_pretrained
from gramr2_jax.sampling import Sampler

FULL = dict(hf=dict(vocab_size=32000, hidden_size=512, intermediate_size=1536,
                    num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
                    head_dim=64, max_position_embeddings=1024, tie_word_embeddings=True),
            batches=(1, 16, 64), prompt_lengths=(16, 48), new_tokens=64,
            prefix=dict(prompts=2, samples=8, prompt_length=512, new_tokens=64), peak_n=None)
QUICK = dict(hf=dict(vocab_size=256, hidden_size=64, intermediate_size=128,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     head_dim=16, max_position_embeddings=256, tie_word_embeddings=True),
             batches=(1, 4), prompt_lengths=(4, 12), new_tokens=8,
             prefix=dict(prompts=2, samples=2, prompt_length=32, new_tokens=8), peak_n=256)
SAMPLING = dict(temperature=1.0, top_k=50, top_p=0.95)


def _body_and_head_params(cfg: ModelConfig) -> tuple[int, int]:
    """(N_body: parameters outside the embedding and head, V·D: those of the head's matmul)."""
    embed = cfg.vocab_size * cfg.hidden_size
    return cfg.num_params() - embed * (1 if cfg.tie_word_embeddings else 2), embed


def _flops(cfg: ModelConfig, prompt_lengths: list[int], new_tokens: int, rows_per_prompt: int,
           prefill_rows_per_prompt: int) -> float:
    body, embed = _body_and_head_params(cfg)
    attn = 4 * cfg.num_layers * cfg.num_heads * cfg.head_dim
    total = 0.0
    for p in prompt_lengths:
        ctx = np.arange(1, p + 1)
        total += prefill_rows_per_prompt * (2 * body * p + attn * ctx.sum() + 2 * embed)
        ctx = p + np.arange(1, new_tokens)  # the first new token comes from prefill
        total += rows_per_prompt * ((new_tokens - 1) * 2 * (body + embed) + attn * ctx.sum())
    return float(total)


def _make_models(hf_kwargs: dict, out_dir: pathlib.Path):
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(**hf_kwargs)
    hf_model = transformers.LlamaForCausalLM(config).eval()
    hf_model.save_pretrained(out_dir, safe_serialization=True)
    return hf_model.to(torch_device()), from_pretrained(out_dir)


def _torch_threads(hf_model, vocab: int) -> int:
    """The faster of 1 and all-CPU threads for one decode-sized forward.

    On a loaded machine OpenMP's spinning threads can make torch many times
    slower; the baseline gets whichever setting is better here and now.
    """
    import torch

    x = torch.randint(0, vocab, (16, 1), device=hf_model.device)
    best = None
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        with torch.no_grad():
            seconds = timeit(lambda: hf_model(x), warmup=1, iters=3)
        if best is None or seconds < best[1]:
            best = (threads, seconds)
    torch.set_num_threads(best[0])
    return best[0]


def _hf_generate_seconds(hf_model, prompts: list[list[int]], new_tokens: int,
                         iters: int = 3) -> float:
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = torch.tensor(p)
        mask[row, width - len(p):] = 1

    ids, mask = ids.to(hf_model.device), mask.to(hf_model.device)

    def run():
        with torch.no_grad():
            out = hf_model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                                    max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                    pad_token_id=0, eos_token_id=None, **SAMPLING)
        assert out.shape == (len(prompts), width + new_tokens)
        _sync_torch()

    return timeit(run, warmup=1, iters=iters)  # the median after a warm-up, as for ours


def _sync_torch() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _ours_seconds(sampler: Sampler, prompts, new_tokens: int, iters: int = 3, warmup: int = 1,
                  **kw) -> float:
    kw = {"return_logprobs": False, **kw}

    def run():
        out = sampler.generate(prompts, max_new_tokens=new_tokens, stop_tokens=(),
                               **SAMPLING, **kw)
        assert out.tokens.shape[1] == new_tokens and (out.lengths == new_tokens).all()
        return out.tokens

    return timeit(run, warmup=warmup, iters=iters)


def _prefill_and_step_seconds(sampler: Sampler, prompts, new_tokens: int,
                              call_seconds: float) -> tuple[float, float]:
    """(a call with 1 new token, one decode step = the rest of a `call_seconds` call with
    `new_tokens` new tokens, per token after the first); medians of 3 calls."""
    prefill = _ours_seconds(sampler, prompts, 1)
    return prefill, (call_seconds - prefill) / (new_tokens - 1)


def run(spec: dict) -> dict:
    rng = np.random.default_rng(0)
    report: dict = {"backend": jax.default_backend(), "devices": jax.device_count(),
                    "machine": machine(), "load_average": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        hf_model, model = _make_models(spec["hf"], pathlib.Path(tmp))
    cfg = model.config
    sampler = Sampler(model)
    report["model"] = dict(params=cfg.num_params(), layers=cfg.num_layers,
                           hidden=cfg.hidden_size, vocab=cfg.vocab_size, dtype="float32")
    peak_before = matmul_peak_flops(n=spec["peak_n"])
    report["torch_device"] = str(hf_model.device)
    report["torch_threads"] = _torch_threads(hf_model, cfg.vocab_size)
    n = spec["new_tokens"]
    lo, hi = spec["prompt_lengths"]
    report["throughput"] = []
    flops_per_s = []  # our rate per row, divided by the peak once both peaks are measured
    prompts_by_batch = {}
    for batch in spec["batches"]:
        prompts = [rng.integers(3, cfg.vocab_size, rng.integers(lo, hi + 1)).tolist()
                   for _ in range(batch)]
        prompts_by_batch[batch] = prompts
        ours = _ours_seconds(sampler, prompts, n)
        hf = _hf_generate_seconds(hf_model, prompts, n)
        flops = _flops(cfg, [len(p) for p in prompts], n, 1, 1)
        report["throughput"].append(dict(
            batch=batch, new_tokens=n, ours_tokens_per_s=round(batch * n / ours, 1),
            hf_tokens_per_s=round(batch * n / hf, 1), speedup_vs_hf=round(hf / ours, 2),
            ours_gflops=round(flops / ours / 1e9, 1)))
        flops_per_s.append(flops / ours)
    # Profile at the largest batch: prefill alone (1 new token) vs per decode step.
    prefill, per_step = _prefill_and_step_seconds(sampler, prompts, n, ours)
    report["profile_largest_batch"] = dict(prefill_s=round(prefill, 4),
                                           decode_step_ms=round(per_step * 1e3, 2))
    report["variants_largest_batch"] = _variants(model, sampler, prompts, n)
    report["feature_major"] = _feature_major(model, sampler, prompts_by_batch, n)
    report["prefix_sharing"] = _prefix_sharing(sampler, spec["prefix"], rng)
    peak = record_peak(report, peak_before, matmul_peak_flops(n=spec["peak_n"]))
    for row, rate in zip(report["throughput"], flops_per_s):
        row["fraction_of_matmul_peak"] = round(rate / peak, 3)
    return report


def _alternated_best(runs: dict, prompts, new_tokens: int) -> dict[str, float]:
    """Best of 3 calls of each run {name: (sampler, generate kwargs)}, alternated; every
    run but "default" (already compiled by the throughput row) is compiled first."""
    for name, (which, kw) in runs.items():
        if name != "default":
            _ours_seconds(which, prompts, new_tokens, iters=1, warmup=0, **kw)
    times = {name: [] for name in runs}
    for _ in range(3):
        for name, (which, kw) in runs.items():
            times[name].append(_ours_seconds(which, prompts, new_tokens, iters=1, warmup=0,
                                             **kw))
    return {name: min(t) for name, t in times.items()}


def _variants(model, sampler: Sampler, prompts, new_tokens: int) -> dict:
    """Our side alone at the largest batch: the default against one change each,
    calls alternated, best of 3 (slowdown > 1: the variant is slower)."""
    best = _alternated_best({"default": (sampler, {}),
                             "one_decode_loop": (Sampler(model, decode_segments=1), {}),
                             "unaligned_prompt_slots": (Sampler(model, cache_slot_multiple=1), {}),
                             "unpacked_prompts": (Sampler(model, pack_prompts=False), {}),
                             "with_logprobs": (sampler, {"return_logprobs": True})},
                            prompts, new_tokens)
    return dict(best_seconds={name: round(t, 3) for name, t in best.items()},
                slowdown={name: round(t / best["default"], 3) for name, t in best.items()
                          if name != "default"})


def _feature_major(model, sampler: Sampler, prompts_by_batch: dict, new_tokens: int) -> dict:
    """At each batch whose decode steps run feature-major by default: the default against
    Sampler(feature_major_rows=0), calls alternated, best of 3 (speedup > 1: the default
    is faster)."""
    runs = {"default": (sampler, {}), "off": (Sampler(model, feature_major_rows=0), {})}
    report = {}
    for batch, prompts in prompts_by_batch.items():
        if 1 < batch <= sampler.feature_major_rows:
            best = _alternated_best(runs, prompts, new_tokens)
            report[str(batch)] = dict(best_seconds={k: round(t, 3) for k, t in best.items()},
                                      speedup=round(best["off"] / best["default"], 3))
    return report


def _prefix_sharing(sampler: Sampler, spec: dict, rng) -> dict:
    vocab = sampler.config.vocab_size
    prompts = [rng.integers(3, vocab, spec["prompt_length"]).tolist()
               for _ in range(spec["prompts"])]
    seconds = {mode: _ours_seconds(sampler, prompts, spec["new_tokens"], prefix=mode,
                                   num_samples=spec["samples"], iters=2)
               for mode in ("shared", "repeat", "unshared")}
    return dict(prompts=spec["prompts"], samples_per_prompt=spec["samples"],
                prompt_length=spec["prompt_length"], new_tokens=spec["new_tokens"],
                seconds={mode: round(t, 3) for mode, t in seconds.items()},
                speedup=round(seconds["unshared"] / seconds["shared"], 2),
                speedup_of_repeat=round(seconds["unshared"] / seconds["repeat"], 2))


def main(argv: list[str] | None = None) -> dict:
    return json_main(__doc__.splitlines()[0], argv,
                     lambda quick: run(QUICK if quick else FULL))


if __name__ == "__main__":
    hostmem.configure_process()
    main()
