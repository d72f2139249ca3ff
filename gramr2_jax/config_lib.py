"""Helpers for big_vision-style config files (configs/<exp>.py).

A config file defines `get_config(arg)` where `arg` is the text after the colon
in `--config=configs/x.py:size=tiny,smoke`; `parse_arg` turns it into a
ConfigDict of typed values. `validate` checks a finished config once, early,
with messages that name the field.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import sys
from typing import Any

import ml_collections

from gramr2_jax import sharding
from gramr2_jax.models.config import PRESETS, ModelConfig, preset

# Chips per host and HBM per chip (GiB) of the TPU generations we plan for.
TPU_SLICES = {
    "v4": {"hbm_gib": 32, "chips_per_host": 4, "cores_per_chip": 2},
    "v5litepod": {"hbm_gib": 16, "chips_per_host": 4, "cores_per_chip": 1},
    "v5e": {"hbm_gib": 16, "chips_per_host": 4, "cores_per_chip": 1},
    "v5p": {"hbm_gib": 95, "chips_per_host": 4, "cores_per_chip": 2},
    "v6e": {"hbm_gib": 32, "chips_per_host": 4, "cores_per_chip": 1},
}


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """'a=1,b=x,flag' → ConfigDict; values typed like the defaults; bare names are True."""
    out = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, _, value = item.partition("=")
        if key not in defaults:
            raise ValueError(f"config arg: unknown key {key!r}; known: {sorted(defaults)}")
        if not _:
            out[key] = True
            continue
        default = defaults[key]
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"config arg: {key}: expected a boolean, got {value!r}")
            out[key] = value.lower() in ("true", "1")
        elif isinstance(default, (int, float)):
            out[key] = type(default)(value)
        else:
            out[key] = value
    return ml_collections.ConfigDict(out)


def _unwrapped(error: BaseException) -> BaseException:
    """The innermost of errors raised with another error as their only argument (absl)."""
    while error.args and isinstance(error.args[0], BaseException):
        error = error.args[0]
    return error


def _one_line(error: BaseException) -> str:
    """An error as one line: its first line, plus its last when they differ.

    ml_collections puts the config file's whole traceback inside its messages;
    the first line names the flag, the last the actual problem.
    """
    error = _unwrapped(error)
    if isinstance(error, SyntaxError):
        return f"{error.filename}:{error.lineno}: {error.msg}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"


def parse_flags(argv: list[str]) -> list[str]:
    """`flags_parser` for `app.run`: a bad flag or config file gives one line and exit 2.

    absl prints ml_collections' config-file tracebacks inside its message, and a
    config file with a syntax error escapes flag parsing as a raw traceback.
    """
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except Exception as e:  # flags.Error, or whatever the config file raised
        message = _one_line(e)
        inner = _unwrapped(e)
        overrides = [arg.split("=")[0] for arg in argv if arg.startswith("--config.")]
        if isinstance(inner, KeyError) and overrides:
            message = f"--config: no field {inner.args[0]} (overrides: {', '.join(overrides)})"
        print(f"error: {message}\nPass --helpfull to see the flags.", file=sys.stderr)
        sys.exit(2)


def config_flag_value(holder) -> ml_collections.ConfigDict:
    """The value of a `DEFINE_config_file` flag, or `error: --config: ...` and exit 2.

    A config file that could not be loaded (e.g. a missing path) parses to a
    placeholder that raises on first use; this reads it once to surface that.
    """
    try:
        config = holder.value
        list(config.keys())
        return config
    except Exception as e:  # whatever loading the config file raised
        print(f"error: --config: {_one_line(e)}", file=sys.stderr)
        sys.exit(2)


def load_config_file(path: str | os.PathLike, arg: str | None = None) -> ml_collections.ConfigDict:
    """get_config(arg) of a config file, for configs built on other configs."""
    spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem + "_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def slice_chips(accelerator_type: str) -> tuple[str, int]:
    """'v5p-64' → ('v5p', chips). v4/v5p names count TensorCores (2 per chip)."""
    generation, _, count = accelerator_type.rpartition("-")
    if generation not in TPU_SLICES or not count.isdigit():
        raise ValueError(f"mesh.slice: unknown accelerator type {accelerator_type!r} "
                         f"(expected e.g. v4-32, v5litepod-64, v5p-64)")
    return generation, int(count) // TPU_SLICES[generation]["cores_per_chip"]


def model_config(model_cfg: ml_collections.ConfigDict) -> ModelConfig:
    """ModelConfig from the `model` section (a preset name plus overrides)."""
    import jax.numpy as jnp

    dtypes = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
    overrides: dict[str, Any] = {}
    for name in ("remat", "scan_layers", "causal_blocks"):
        if name in model_cfg:
            overrides[name] = model_cfg[name]
    for name in ("dtype", "param_dtype"):
        if name in model_cfg:
            overrides[name] = dtypes[model_cfg[name]]
    for key, value in dict(model_cfg.get("overrides", {}) or {}).items():
        overrides[key] = value
    return preset(model_cfg.preset, **overrides)


def validate(config: ml_collections.ConfigDict, *, require_data: bool = True) -> None:
    """Fails early, naming the field, on the settings every program shares.

    require_data=False skips the data/checkpoint paths (for tools that only size a run)."""
    errors = []
    if "model" in config:
        m = config.model
        if m.get("preset") is not None and m.preset not in PRESETS:
            errors.append(f"model.preset: {m.preset!r} is not one of {sorted(PRESETS)}")
        for name in ("dtype", "param_dtype"):
            if name in m and m[name] not in ("float32", "bfloat16"):
                errors.append(f"model.{name}: expected 'float32' or 'bfloat16', got {m[name]!r}")
        if "remat" in m and m.remat not in ("none", "full"):
            errors.append(f"model.remat: expected 'none' or 'full', got {m.remat!r}")
        blocks = m.get("causal_blocks")
        if blocks is not None and (not isinstance(blocks, int) or blocks < 1):
            errors.append(f"model.causal_blocks: expected an integer >= 1, got {blocks!r}")
    if "mesh" in config:
        shape = tuple(config.mesh.shape)
        if len(shape) != 3 or shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
            errors.append(f"mesh.shape: expected 3 positive sizes (one may be -1) for "
                          f"(data, fsdp, tensor), got {shape}")
        if config.mesh.get("slice"):
            try:
                slice_chips(config.mesh.slice)
            except ValueError as e:
                errors.append(str(e))
    if "sharding" in config and config.sharding.get("rules") is not None:
        try:
            sharding.normalize_rules(config.sharding.rules)
        except ValueError as e:
            errors.append(str(e))
    if require_data and "data" in config and config.data.get("source") == "files":
        for field in ("seed_path", "unlabelled_path", "test_id_path", "test_ood_path"):
            if not config.data.get(field):
                errors.append(f"data.{field}: required when data.source='files'")
        if not config.model.get("hf_path"):
            errors.append("model.hf_path: required when data.source='files' (no stage-0 "
                          "pretraining on real data)")
    if "selftrain" in config:
        st = config.selftrain
        for field, allowed in (("rationale_source", ("self", "prover")),
                               ("pool_per_round", ("fresh", "all")),
                               ("merge", ("cumulative", "latest")),
                               ("retrain_from", ("base", "seed", "previous"))):
            if st.get(field) not in allowed:
                errors.append(f"selftrain.{field}: expected one of {allowed}, got {st.get(field)!r}")
        from gramr2_jax.selftrain import curriculum

        cur = dict(st.curriculum.to_dict(), num_rounds=max(st.num_rounds, 1))
        errors += curriculum.validate(cur, prefix="selftrain.curriculum")
    for section, field in (("train", "batch_size"), ("train", "seq_len"),
                           ("label", "batch_size"), ("label", "num_samples")):
        if section in config and field in config[section] and config[section][field] <= 0:
            errors.append(f"{section}.{field}: must be positive, got {config[section][field]}")
    if errors:
        raise ValueError("invalid config:\n  " + "\n  ".join(errors))

