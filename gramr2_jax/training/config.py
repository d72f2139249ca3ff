"""Trainer settings: a frozen dataclass read from an ml_collections ConfigDict (or dict).

`TrainConfig.from_config(cfg)` rejects unknown fields and invalid values with
the field's name, so a typo in `--config.train.x=...` fails before any work.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

from gramr2_jax.training.losses import LOSS_KINDS

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    loss: str = "sft"  # "sft" | "verdict" (GRAM v1) | "bt" (scalar head)
    num_steps: int = 1000
    seed: int = 0  # reward-head init (bt)
    # Optimizer: AdamW, warmup + cosine, global-norm clipping.
    learning_rate: float = 1e-5
    warmup_steps: int = 0
    end_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    max_grad_norm: float | None = 1.0
    grad_accum_steps: int = 1
    # Losses.
    label_smoothing: float = 0.1  # verdict
    verdict_token_ids: tuple[int, int] | None = None  # verdict; from JudgePromptBuilder.verdict_ids
    # Numerics and layout (applied when the model is loaded from a directory).
    compute_dtype: str = "bfloat16"
    param_dtype: str = "float32"
    scan_layers: bool = False
    remat: str = "none"
    causal_blocks: int | None = None  # None = ModelConfig's default (8)
    # Mesh (data, fsdp, tensor) and logical-axis rules (None = sharding.DEFAULT_RULES).
    mesh_shape: tuple[int, int, int] = (-1, 1, 1)
    sharding_rules: tuple | None = None
    # Checkpoints, logs, eval, export.
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    async_checkpoints: bool = True
    log_every: int = 1  # write that step's metrics every N steps (and at the last step)
    eval_every: int = 0  # 0: no eval during training
    export: bool = True  # write <workdir>/export as an HF model directory at the end
    progress_bar: bool = True
    # Batches made ahead in a background thread while the step runs (0: made in the loop).
    prefetch_batches: int = 2
    # Compile the step for the coming batch shapes (length buckets) in a background
    # thread while earlier steps run, where the source can tell them
    # (Loader.first_batch_of_each_shape); one JAX process only.
    compile_ahead: bool = True

    def __post_init__(self):
        errors = []
        if self.loss not in LOSS_KINDS:
            errors.append(f"loss: {self.loss!r} is not one of {LOSS_KINDS}")
        for name in ("num_steps", "grad_accum_steps", "checkpoint_every", "keep_checkpoints",
                     "log_every"):
            if getattr(self, name) < 1:
                errors.append(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "prefetch_batches"):
            if getattr(self, name) < 0:
                errors.append(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            errors.append(f"learning_rate: must be positive, got {self.learning_rate}")
        if not 0.0 <= self.end_lr_ratio <= 1.0:
            errors.append(f"end_lr_ratio: must be in [0, 1], got {self.end_lr_ratio}")
        if not 0.0 <= self.label_smoothing < 1.0:
            errors.append(f"label_smoothing: must be in [0, 1), got {self.label_smoothing}")
        if self.loss == "verdict" and (self.verdict_token_ids is None
                                       or len(self.verdict_token_ids) != 2):
            errors.append("verdict_token_ids: loss='verdict' needs the (A, B) token ids")
        for name in ("compute_dtype", "param_dtype"):
            if getattr(self, name) not in _DTYPES:
                errors.append(f"{name}: {getattr(self, name)!r} is not one of {sorted(_DTYPES)}")
        if self.remat not in ("none", "full"):
            errors.append(f"remat: expected 'none' or 'full', got {self.remat!r}")
        if len(self.mesh_shape) != 3:
            errors.append("mesh_shape: expected 3 sizes (data, fsdp, tensor), "
                          f"got {self.mesh_shape}")
        if errors:
            raise ValueError("invalid train config: " + "; ".join(errors))

    @property
    def compute_jnp_dtype(self):
        return _DTYPES[self.compute_dtype]

    @property
    def param_jnp_dtype(self):
        return _DTYPES[self.param_dtype]

    @classmethod
    def from_config(cls, config: "TrainConfig | Mapping[str, Any] | Any") -> "TrainConfig":
        """From a TrainConfig, a dict, or an ml_collections ConfigDict."""
        if isinstance(config, cls):
            return config
        values = dict(config.to_dict() if hasattr(config, "to_dict") else config)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"invalid train config: unknown field(s) {unknown}; "
                             f"known: {sorted(known)}")
        for name in ("verdict_token_ids", "mesh_shape"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        if values.get("sharding_rules") is not None:
            values["sharding_rules"] = tuple(tuple(r) for r in values["sharding_rules"])
        return cls(**values)
