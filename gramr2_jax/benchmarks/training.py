"""Training-step throughput: this codebase's jitted step vs transformers + torch AdamW.

    python -m gramr2_jax.benchmarks.training [--quick] [--scan_layers] [--remat=full] [--out F]

Prints one JSON object. Both sides train the same Llama-style config on the same
token batch with AdamW (SFT loss over every next token, float32 everywhere, so
the matmul peak used for MFU is the float32 one, measured in this same run).

MFU = 6·N·tokens/s ÷ peak, with N = parameters that take part in matmuls (all
but the input embedding table, which is a gather). Attention's T² FLOPs are not
counted, as in the usual 6N rule. Step times are the best of `--iters` steps
(the median is printed too), matching the best-of matmul peak.

Both sides run in this one process, with the host-memory settings of
`gramr2_jax/hostmem.py` (as every entry point; GRAMR2_TUNE_MALLOC=0 runs
without them); minor page faults per step are printed for each side.
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gramr2_jax import hostmem
from gramr2_jax.benchmarks.common import (
    emit_json,
    machine,
    matmul_peak_flops,
    record_peak,
    timeit,
    torch_device,
)
from gramr2_jax.models import ModelConfig, Transformer, config_to_hf
from gramr2_jax.sharding import make_mesh
from gramr2_jax.training.losses import Objective
from gramr2_jax.training.optimizer import learning_rate_schedule, make_optimizer
from gramr2_jax.training.train_state import create_train_state
from gramr2_jax.training.train_step import make_train_step

# ~36M parameters (31.5M in matmuls): the benchmark model.
BENCH = ModelConfig(family="llama", vocab_size=8192, hidden_size=512, num_layers=8, num_heads=8,
                    num_kv_heads=8, head_dim=64, mlp_dim=1536, rms_norm_eps=1e-5,
                    max_position_embeddings=1024)
QUICK = ModelConfig(family="llama", vocab_size=256, hidden_size=64, num_layers=2, num_heads=4,
                    num_kv_heads=2, head_dim=16, mlp_dim=128, max_position_embeddings=128)


def matmul_params(cfg: ModelConfig) -> int:
    return cfg.num_params() - cfg.vocab_size * cfg.hidden_size


def make_batch(cfg: ModelConfig, batch_size: int, seq_len: int) -> dict[str, np.ndarray]:
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (batch_size, seq_len))
    ones = np.ones((batch_size, seq_len), bool)
    return {"tokens": tokens.astype(np.int32), "input_mask": ones, "loss_mask": ones}


def time_jax(cfg: ModelConfig, batch: dict[str, np.ndarray], iters: int) -> dict[str, float]:
    mesh = make_mesh((1, 1, 1))
    schedule = learning_rate_schedule(1e-4, 10, 1000, 0.1)
    make_tx = functools.partial(make_optimizer, weight_decay=0.0, b1=0.9, b2=0.999, eps=1e-8,
                                max_grad_norm=1.0)
    model = Transformer(cfg, rngs=nnx.Rngs(0))
    graphdef, state, shardings = create_train_state(model, make_tx(schedule), mesh)
    del model
    step_fn = make_train_step(graphdef, shardings, mesh, objective=Objective("sft"),
                              make_tx=make_tx, schedule=schedule)
    device_batch = {k: jax.device_put(v) for k, v in batch.items()}
    holder = {"state": state}

    def one_step():
        holder["state"], metrics = step_fn(holder["state"], device_batch)
        return metrics["loss"]

    start = time.perf_counter()
    first_loss = float(one_step())
    compile_s = time.perf_counter() - start
    return {**_time_steps(one_step, iters), "compile_and_first_step_s": compile_s,
            "first_loss": first_loss}


def _time_steps(one_step, iters: int) -> dict[str, float]:
    """One warm-up step, then `iters` timed steps: best and median time, page faults.

    Best and median: the peak is a best-of too, and on a shared machine slow runs
    mostly measure other people's work; the median shows how noisy it was.
    """
    one_step()
    faults = hostmem.minor_page_faults()
    times = sorted(timeit(one_step, warmup=0, iters=1) for _ in range(iters))
    return {"step_s": times[0], "median_step_s": times[len(times) // 2],
            "page_faults_per_step": (hostmem.minor_page_faults() - faults) / iters}


def time_torch(cfg: ModelConfig, batch: dict[str, np.ndarray], iters: int) -> dict[str, float]:
    import torch
    import transformers

    torch.manual_seed(0)
    hf_config = transformers.LlamaConfig(**{k: v for k, v in config_to_hf(cfg).items()
                                            if k not in ("architectures", "model_type")})
    hf_config._attn_implementation = "sdpa"
    device = torch_device()
    model = transformers.LlamaForCausalLM(hf_config).float().train().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    tokens = torch.from_numpy(batch["tokens"]).long().to(device)

    def one_step():
        out = model(input_ids=tokens, labels=tokens)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(out.loss.detach())

    start = time.perf_counter()
    first_loss = one_step()
    first_s = time.perf_counter() - start
    return {**_time_steps(one_step, iters), "first_step_s": first_s, "first_loss": first_loss,
            "threads": torch.get_num_threads(), "device": device}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (numbers meaningless)")
    parser.add_argument("--scan_layers", action="store_true")
    parser.add_argument("--remat", default="none", choices=("none", "full"))
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--seq_len", type=int, default=None)
    parser.add_argument("--iters", type=int, default=None)
    parser.add_argument("--skip_torch", action="store_true")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()

    cfg = (QUICK if args.quick else BENCH).replace(scan_layers=args.scan_layers, remat=args.remat)
    batch_size = args.batch_size or (2 if args.quick else 8)
    seq_len = args.seq_len or (32 if args.quick else 128)
    iters = args.iters or (1 if args.quick else 5)
    batch = make_batch(cfg, batch_size, seq_len)
    tokens = batch_size * seq_len
    flops_per_step = 6 * matmul_params(cfg) * tokens

    peak_n = 256 if args.quick else None
    peak_before = matmul_peak_flops(jnp.float32, n=peak_n)
    results = {"model_params": cfg.num_params(), "matmul_params": matmul_params(cfg),
               "batch_size": batch_size, "seq_len": seq_len, "scan_layers": args.scan_layers,
               "remat": args.remat, "backend": jax.default_backend(),
               "machine": machine(), "host_memory": hostmem.describe()}
    sides = {"jax": time_jax(cfg, batch, iters)}
    if not args.skip_torch:
        sides["torch"] = time_torch(cfg, batch, iters)
    peak = record_peak(results, peak_before, matmul_peak_flops(jnp.float32, n=peak_n))
    for name, side in sides.items():
        side["tokens_per_s"] = tokens / side["step_s"]
        side["mfu"] = flops_per_step / side["step_s"] / peak
        results[name] = side
    if "torch" in sides:
        results["jax_speedup_vs_torch"] = sides["torch"]["step_s"] / sides["jax"]["step_s"]
    emit_json(results, args.out)


if __name__ == "__main__":
    hostmem.configure_process()
    main()
