r"""Per-device memory plan for a config, computed from shapes alone.

    python -m gramr2_jax.plan --config=configs/gram_r2_pod.py:model=llama3.1_8b,slice=v5litepod-64

Nothing is allocated: parameter shapes come from `jax.eval_shape`, shardings
from the config's logical rules on the config's mesh. Reports, per device:
parameters, gradients and AdamW state (training), activations at the configured
remat, and the KV cache of the labelling stage; refuses (exit 1) a config that
does not fit the slice's HBM and says what to change.

Activation model (per layer, per device, bytes): the residual-stream tensors
b·s·h·(10 + 24/t)·(itemsize/2) of Korthikanti et al. (2022, "Reducing
Activation Recomputation"), for one microbatch, plus attention scores b·(a/t)·s²·(4 + itemsize)
because our softmax runs in float32. With remat='full' only each layer's input
(b·s·h·itemsize) is kept, plus one layer's full activations while recomputing.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
from absl import app, flags
from flax import nnx
from ml_collections import config_flags

from gramr2_jax import config_lib, sharding
from gramr2_jax.models.config import ModelConfig
from gramr2_jax.models.hf_io import abstract_model

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_JSON = flags.DEFINE_bool("json", False, "Print the plan as JSON only.")

GIB = 1 << 30
HEADROOM = 0.9  # leave 10% of HBM to XLA's own buffers


@dataclasses.dataclass
class MemoryPlan:
    mesh: dict[str, int]
    hbm_bytes: int
    params: int
    grads: int
    optimizer: int
    activations: int
    logits: int
    kv_cache: int
    replicated_fraction: float
    remat: str

    @property
    def train_total(self) -> int:
        return self.params + self.grads + self.optimizer + self.activations + self.logits

    @property
    def label_total(self) -> int:
        return self.params + self.kv_cache

    def problems(self) -> list[str]:
        """What to change when a stage does not fit, naming the config fields."""
        budget = HEADROOM * self.hbm_bytes
        out = []
        if self.train_total > budget:
            state = self.params + self.grads + self.optimizer
            if state > budget / 2:
                out.append("training state alone needs "
                           f"{state / GIB:.1f} GiB/device: raise mesh.shape's fsdp size, "
                           "or use a bigger slice (mesh.slice)")
            else:
                fix = ("raise train.grad_accum_steps (smaller microbatches) or lower "
                       "train.seq_len" if self.remat == "full" else "set model.remat='full'")
                out.append(f"training needs {self.train_total / GIB:.1f} GiB/device > "
                           f"{budget / GIB:.1f} GiB: {fix}")
        if self.label_total > budget:
            out.append(f"labelling needs {self.label_total / GIB:.1f} GiB/device: lower "
                       "label.batch_size, label.num_samples or label.max_new_tokens")
        return out


def _divide(total: int, parts: int, field: str) -> int:
    if total % parts:
        raise ValueError(f"{field}: {total} is not divisible by the {parts} data-parallel shards")
    return total // parts


def plan(config) -> MemoryPlan:
    cfg: ModelConfig = config_lib.model_config(config.model)
    generation, chips = config_lib.slice_chips(config.mesh.slice)
    shape = sharding.resolve_mesh_shape(config.mesh.shape, chips)
    mesh = dict(zip(sharding.MESH_AXES, shape))
    rules = config.sharding.rules if "sharding" in config else None
    state = nnx.state(abstract_model(cfg))
    stats = sharding.param_stats(state, mesh, rules)
    itemsize = np.dtype(cfg.param_dtype).itemsize
    param_elems = stats.per_device_bytes // itemsize
    batch_shards = mesh["data"] * mesh["fsdp"]
    t = mesh["tensor"]
    act_size = np.dtype(cfg.dtype).itemsize

    # Activations live for one microbatch at a time under gradient accumulation.
    accum = config.train.get("grad_accum_steps", 1)
    b = _divide(config.train.batch_size, batch_shards * accum,
                "train.batch_size / train.grad_accum_steps")
    s, h, a = config.train.seq_len, cfg.hidden_size, cfg.num_heads
    per_layer = (b * s * h * (10 + 24 / t) * act_size / 2
                 + b * (a / t) * s * s * (4 + act_size))
    if cfg.remat == "full":
        activations = cfg.num_layers * b * s * h * act_size + per_layer
    else:
        activations = cfg.num_layers * per_layer
    vocab_shard = t if cfg.vocab_size % t == 0 else 1
    logits = 2 * b * s * (cfg.vocab_size // vocab_shard) * 4  # f32 logits and their grad

    rows = _divide(config.label.batch_size * config.label.num_samples, batch_shards,
                   "label.batch_size × label.num_samples")
    kv_shard = t if cfg.num_kv_heads % t == 0 else 1
    cache_len = config.label.prompt_len + config.label.max_new_tokens
    kv_cache = (2 * cfg.num_layers * rows * cache_len * (cfg.num_kv_heads // kv_shard)
                * cfg.head_dim * act_size)
    return MemoryPlan(
        mesh=mesh, hbm_bytes=config_lib.TPU_SLICES[generation]["hbm_gib"] * GIB,
        params=stats.per_device_bytes, grads=param_elems * 4, optimizer=2 * param_elems * 4,
        activations=int(activations), logits=int(logits), kv_cache=int(kv_cache),
        replicated_fraction=stats.replicated_fraction, remat=cfg.remat)


def format_plan(p: MemoryPlan, config) -> str:
    gib = lambda x: f"{x / GIB:8.2f} GiB"  # noqa: E731
    lines = [
        f"model {config.model.preset} on {config.mesh.slice}, mesh "
        + " × ".join(f"{k}={v}" for k, v in p.mesh.items())
        + f", HBM {p.hbm_bytes / GIB:.0f} GiB/chip (budget {HEADROOM:.0%})",
        f"  params            {gib(p.params)}   (replicated share {p.replicated_fraction:.2e})",
        f"  grads (f32)       {gib(p.grads)}",
        f"  AdamW state (f32) {gib(p.optimizer)}",
        f"  activations       {gib(p.activations)}   (remat={config.model.remat}, "
        f"batch {config.train.batch_size} × {config.train.seq_len} tokens, "
        f"{config.train.get('grad_accum_steps', 1)} microbatches)",
        f"  logits + grad     {gib(p.logits)}",
        f"  = training        {gib(p.train_total)}",
        f"  KV cache (label)  {gib(p.kv_cache)}   ({config.label.batch_size} prompts × "
        f"k={config.label.num_samples}, {config.label.prompt_len}+{config.label.max_new_tokens} tokens)",
        f"  = labelling       {gib(p.label_total)}",
    ]
    return "\n".join(lines)


def main(argv):
    del argv
    config = config_lib.config_flag_value(_CONFIG)
    try:
        config_lib.validate(config, require_data=False)
        p = plan(config)
    except ValueError as e:
        print(f"plan: {e}", file=sys.stderr)
        sys.exit(2)
    problems = p.problems()
    if _JSON.value:
        out = dataclasses.asdict(p) | {"train_total": p.train_total, "label_total": p.label_total,
                                       "fits": not problems, "problems": problems}
        print(json.dumps(out, indent=2))
    else:
        print(format_plan(p, config))
        for problem in problems:
            print(f"DOES NOT FIT: {problem}")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main, flags_parser=config_lib.parse_flags)
