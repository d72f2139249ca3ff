"""Timing helpers shared by the benchmarks: a wall-clock timer, the matmul peak, the machine.

The peak is *measured*, not looked up: the best FLOP/s of a jitted square matmul
on the default backend, so "fraction of peak" numbers are relative to what this
machine (with its current load) actually delivers.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from gramr2_jax import hostmem


def _run_times(fn: Callable[[], Any], warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(max(iters, 1)):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return sorted(times)


def timeit(fn: Callable[[], Any], warmup: int = 1, iters: int = 3) -> float:
    """Median seconds of `fn()` over `iters` runs after `warmup` runs.

    Blocks on the result, so asynchronous dispatch is included in the time.
    """
    times = _run_times(fn, warmup, iters)
    return times[len(times) // 2]


def best_seconds(fn: Callable[[], Any], warmup: int = 1, iters: int = 5) -> float:
    """Fewest seconds of `fn()` over `iters` runs after `warmup` runs (blocking on the result)."""
    return _run_times(fn, warmup, iters)[0]


def record_peak(report: dict, before: float, after: float) -> float:
    """The higher of two matmul-peak readings (FLOP/s) taken before and after a benchmark's
    runs, recorded in `report` with both readings. One reading caught in a busy moment
    (195.5 GFLOP/s at the start of sampling run 32, 268-281 a minute later) would inflate
    every fraction of the peak."""
    peak = max(before, after)
    report["matmul_peak_gflops"] = round(peak / 1e9, 1)
    report["matmul_peak_gflops_before_after"] = [round(before / 1e9, 1), round(after / 1e9, 1)]
    return peak


def _default_size() -> int:
    return 1024 if jax.default_backend() == "cpu" else 8192


def matmul_peak_flops(dtype=jnp.float32, n: int | None = None, iters: int = 10) -> float:
    """Best measured FLOP/s of an n×n @ n×n matmul (4 chained per call to hide dispatch).

    The best run, not the median: a peak is what the hardware can do, and on a
    shared machine slower runs mostly measure other people's work.
    """
    n = _default_size() if n is None else n
    chain = 4
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    b = (jax.random.normal(jax.random.key(1), (n, n), jnp.float32) / n ** 0.5).astype(dtype)

    @jax.jit
    def run(a, b):
        for _ in range(chain):
            a = a @ b
        return a

    seconds = best_seconds(lambda: run(a, b), warmup=2, iters=iters)
    return chain * 2.0 * n ** 3 / seconds


def torch_device() -> str:
    """Where the torch peer runs: CUDA when JAX runs on a GPU and torch sees one, else CPU."""
    import torch

    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


# The vector extensions that decide XLA:CPU's and torch's matmul kernels: x86's AVX-512
# and AMX first, then the narrower x86 ones, then ARM's.
_VECTOR_ISAS = ("avx512f", "avx512_bf16", "amx_tile", "avx2", "fma", "avx", "sse4_2", "asimd", "sve")


def parse_cpuinfo(text: str) -> dict:
    """The first processor's model and vector extensions from /proc/cpuinfo text."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return {"cpu_model": fields.get("model name", ""),
            "cpu_family": fields.get("cpu family", ""), "cpu_model_number": fields.get("model", ""),
            "vector_isa": [isa for isa in _VECTOR_ISAS if isa in flags]}


def machine(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> dict:
    """What a benchmark ran on, for its JSON.

    Ratios against torch move with the CPU's vector width: the same code read 2.1-2.8x
    transformers on an AVX2 machine and 3.0-4.2x on an AVX-512 one (SAMPLING.md).
    """
    info = {"platform": platform.platform(), "cpu_count": os.cpu_count()}
    try:
        text = pathlib.Path(cpuinfo).read_text()
    except OSError:  # not Linux
        return {**info, "cpu_model": platform.processor()}
    return {**info, **parse_cpuinfo(text)}


def json_main(description: str, argv: list[str] | None, run: Callable[[bool], dict]) -> dict:
    """A benchmark's command line, `[--quick] [--out FILE]`: prints `run(quick)`'s report as
    JSON, led by the process's host-memory settings, and also writes it to FILE."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    report = {"host_memory": hostmem.describe(), **run(args.quick)}
    emit_json(report, args.out)
    return report


def emit_json(report: dict, out: str | None) -> None:
    """Prints a benchmark's report as JSON, and also writes it to `out` when given."""
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        pathlib.Path(out).write_text(text + "\n")
