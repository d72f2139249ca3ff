"""Load and save Hugging Face model directories.

`from_pretrained` reads config.json (old style: top-level `rope_theta` /
`rope_scaling`; current style: `rope_parameters`) and single or index-sharded
safetensors, memory-mapped. With a mesh, each parameter is created with
`jax.make_array_from_callback`, so every device receives only its own shard
and no device ever holds a full copy.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from gramr2_jax import sharding as sharding_lib
from gramr2_jax.models import hf_mapping
from gramr2_jax.models.config import ModelConfig, RopeScaling
from gramr2_jax.models.transformer import Transformer

_SAFETENSORS_DTYPES = {
    "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "F64": np.float64, "I64": np.int64, "I32": np.int32,
}
_DTYPE_NAMES = {np.dtype(v): k for k, v in _SAFETENSORS_DTYPES.items()}
_MODEL_TYPES = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2", "qwen3": "qwen3"}


class CheckpointError(ValueError):
    """A model directory that cannot be loaded; the message names file and field."""


# ----------------------------------------------------------------------------- config


def _rope_from_hf(hf: dict, where: str) -> tuple[float, RopeScaling | None]:
    params = hf.get("rope_parameters")
    if params is None:  # older config.json style
        params = dict(hf.get("rope_scaling") or {})
        params.setdefault("rope_theta", hf.get("rope_theta", 10_000.0))
    kind = params.get("rope_type", params.get("type", "default"))
    theta = float(params.get("rope_theta", hf.get("rope_theta", 10_000.0)))
    if kind == "default":
        return theta, None
    if kind == "linear":
        return theta, RopeScaling("linear", float(params["factor"]))
    if kind == "llama3":
        try:
            return theta, RopeScaling(
                "llama3", float(params["factor"]), float(params["low_freq_factor"]),
                float(params["high_freq_factor"]),
                int(params["original_max_position_embeddings"]))
        except KeyError as e:
            raise CheckpointError(f"{where}: rope_parameters: llama3 scaling needs {e}") from None
    raise CheckpointError(f"{where}: rope_parameters.rope_type: {kind!r} is not supported "
                          "(supported: default, linear, llama3)")


def config_from_hf(hf: dict, where: str = "config.json", **overrides) -> ModelConfig:
    """ModelConfig from a parsed HF config.json dict."""
    model_type = hf.get("model_type")
    if model_type not in _MODEL_TYPES:
        raise CheckpointError(f"{where}: model_type: {model_type!r} is not supported "
                              f"(supported: {sorted(_MODEL_TYPES)})")
    family = _MODEL_TYPES[model_type]
    for flag in ("mlp_bias",):
        if hf.get(flag):
            raise CheckpointError(f"{where}: {flag}: true is not supported")
    if hf.get("attention_bias") and family != "qwen2":
        raise CheckpointError(f"{where}: attention_bias: true (o_proj bias) is not supported")
    try:
        heads = int(hf["num_attention_heads"])
        hidden = int(hf["hidden_size"])
        theta, scaling = _rope_from_hf(hf, where)
        window = hf.get("sliding_window")
        if family == "qwen2" or family == "qwen3":
            window = window if hf.get("use_sliding_window") else None
        cfg = ModelConfig(
            family=family,
            vocab_size=int(hf["vocab_size"]),
            hidden_size=hidden,
            num_layers=int(hf["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(hf.get("num_key_value_heads") or heads),
            head_dim=int(hf.get("head_dim") or hidden // heads),
            mlp_dim=int(hf["intermediate_size"]),
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope_theta=theta,
            rope_scaling=scaling,
            max_position_embeddings=int(hf.get("max_position_embeddings", 4096)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            qkv_bias=family == "qwen2",
            qk_norm=family == "qwen3",
            sliding_window=int(window) if window else None,
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=hf.get("eos_token_id"),
            pad_token_id=hf.get("pad_token_id"),
        )
    except KeyError as e:
        raise CheckpointError(f"{where}: missing field {e}") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: {e}") from None
    return cfg.replace(**overrides) if overrides else cfg


def config_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    """config.json contents in the current transformers style (rope_parameters)."""
    rope: dict[str, Any] = {"rope_theta": cfg.rope_theta, "rope_type": "default"}
    if cfg.rope_scaling is not None:
        s = cfg.rope_scaling
        rope.update(rope_type=s.kind, factor=s.factor)
        if s.kind == "llama3":
            rope.update(low_freq_factor=s.low_freq_factor, high_freq_factor=s.high_freq_factor,
                        original_max_position_embeddings=s.original_max_position_embeddings)
    arch = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
            "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[cfg.family]
    hf = {
        "architectures": [arch], "model_type": cfg.family,
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.mlp_dim, "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim, "hidden_act": "silu", "rms_norm_eps": cfg.rms_norm_eps,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "rope_parameters": rope, "attention_bias": False,
        "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
        "dtype": {np.dtype(jnp.bfloat16): "bfloat16", np.dtype(jnp.float16): "float16"}.get(
            np.dtype(cfg.param_dtype), "float32"),
    }
    if cfg.family == "llama":
        hf["mlp_bias"] = False
    if cfg.sliding_window is not None:
        hf["sliding_window"] = cfg.sliding_window
        if cfg.family in ("qwen2", "qwen3"):
            hf["use_sliding_window"] = True
    elif cfg.family in ("mistral", "qwen2", "qwen3"):
        hf["sliding_window"] = None
    return hf


def load_config(path: str | os.PathLike, **overrides) -> ModelConfig:
    config_path = pathlib.Path(path) / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{config_path}: not found (a model DIR must hold config.json)")
    try:
        hf = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{config_path}:{e.lineno}: invalid JSON: {e.msg}") from None
    return config_from_hf(hf, str(config_path), **overrides)


# ----------------------------------------------------------------------------- safetensors


def _read_safetensors_header(path: pathlib.Path) -> tuple[dict, int]:
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path}: truncated safetensors header")
        n = int.from_bytes(raw, "little")
        header = json.loads(f.read(n))
    return header, 8 + n


def open_safetensors(model_dir: pathlib.Path) -> dict[str, np.ndarray]:
    """name → memory-mapped numpy array, over single or index-sharded files."""
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (model_dir / "model.safetensors").exists():
        files = ["model.safetensors"]
    else:
        raise CheckpointError(f"{model_dir}: no model.safetensors or model.safetensors.index.json")
    tensors: dict[str, np.ndarray] = {}
    for name in files:
        path = model_dir / name
        header, offset = _read_safetensors_header(path)
        data = np.memmap(path, dtype=np.uint8, mode="r")
        for key, info in header.items():
            if key == "__metadata__":
                continue
            dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
            if dtype is None:
                raise CheckpointError(f"{path}: {key}: unsupported dtype {info['dtype']}")
            start, end = info["data_offsets"]
            tensors[key] = data[offset + start: offset + end].view(dtype).reshape(info["shape"])
    return tensors


def _write_safetensors(path: pathlib.Path, tensors: dict[str, np.ndarray]) -> None:
    header, offset = {}, 0
    for key, arr in tensors.items():
        header[key] = {"dtype": _DTYPE_NAMES[arr.dtype], "shape": list(arr.shape),
                       "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for arr in tensors.values():
            f.write(np.ascontiguousarray(arr).tobytes())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- model


def _path_key(path: tuple) -> str:
    return "/".join(str(p) for p in path)


def _scan_key(our_path: str) -> str:
    parts = our_path.split("/")
    return "/".join(parts[:1] + parts[2:]) if parts[0] == "layers" else our_path


def abstract_model(cfg: ModelConfig) -> Transformer:
    return nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))


def from_pretrained(path: str | os.PathLike, *, dtype=jnp.float32, param_dtype=None,
                    mesh: jax.sharding.Mesh | None = None, rules=None,
                    scan_layers: bool = False, remat: str = "none",
                    causal_blocks: int | None = None) -> Transformer:
    """Loads a local HF model directory into a Transformer (sharded if mesh is given).

    dtype is the compute dtype; param_dtype (default: dtype) the stored one.
    scan_layers, remat, causal_blocks: layout (ModelConfig); None = its default.
    """
    model_dir = pathlib.Path(path)
    layout = {} if causal_blocks is None else {"causal_blocks": causal_blocks}
    cfg = load_config(model_dir, dtype=dtype, param_dtype=param_dtype or dtype,
                      scan_layers=scan_layers, remat=remat, **layout)
    tensors = open_safetensors(model_dir)
    table = hf_mapping.param_table(cfg)
    missing = [hf for hf, _, _, _ in table if hf not in tensors]
    if missing:
        raise CheckpointError(f"{model_dir}: missing tensors {missing[:5]}"
                              f"{' ...' if len(missing) > 5 else ''} for a {cfg.family} config")
    known = {hf for hf, _, _, _ in table} | ({"lm_head.weight"} if cfg.tie_word_embeddings else set())
    unexpected = [k for k in tensors if k not in known and not k.endswith(hf_mapping.IGNORED_SUFFIXES)]
    if unexpected:
        raise CheckpointError(f"{model_dir}: unexpected tensors {unexpected[:5]} "
                              f"(model_type {cfg.family} does not use them)")

    # our parameter path → list of (hf name, transform) (one per layer when scanned)
    sources: dict[str, list[tuple[str, str]]] = {}
    for hf_name, ours, transform, _ in table:
        key = _scan_key(ours) if cfg.scan_layers else ours
        sources.setdefault(key, []).append((hf_name, transform))

    graphdef, state = nnx.split(abstract_model(cfg))
    mesh_shape = dict(mesh.shape) if mesh is not None else {}
    for path, var in nnx.to_flat_state(state):
        key = _path_key(path)
        shape, target_dtype = var.value.shape, var.value.dtype
        entries = sources[key]
        per_layer_shape = shape[1:] if cfg.scan_layers and key.startswith("layers/") else shape

        def host_array(entries=entries, per_layer_shape=per_layer_shape, shape=shape,
                       target_dtype=target_dtype, key=key):
            parts = []
            for hf_name, transform in entries:
                hf = tensors[hf_name]
                if math.prod(hf.shape) != math.prod(per_layer_shape):
                    raise CheckpointError(f"{model_dir}: {hf_name}: shape {tuple(hf.shape)} does "
                                          f"not fit {key} {per_layer_shape}")
                parts.append(hf_mapping.to_ours(transform, np.asarray(hf), per_layer_shape))
            arr = np.stack(parts) if len(parts) > 1 or len(shape) > len(per_layer_shape) else parts[0]
            return arr.astype(target_dtype)

        if mesh is None:
            var.value = jax.device_put(host_array())
        else:
            spec = sharding_lib.logical_to_spec(
                var.get_metadata()["logical_axes"], shape, mesh_shape, rules)
            cache: dict[str, np.ndarray] = {}

            def shard(index, host_array=host_array, cache=cache):
                if "full" not in cache:  # one host copy per tensor, sliced per device
                    cache["full"] = host_array()
                return cache["full"][index]

            var.value = jax.make_array_from_callback(
                shape, jax.sharding.NamedSharding(mesh, spec), shard)
    return nnx.merge(graphdef, state)


def _host_value(x: jax.Array) -> np.ndarray:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def save_pretrained(model: Transformer, path: str | os.PathLike, tokenizer=None, *,
                    max_shard_bytes: int = 4 << 30) -> pathlib.Path:
    """Writes an HF model directory (config.json + safetensors) that transformers loads.

    Multi-host: every process must call it (parameters are gathered); process 0 writes.
    """
    cfg = model.config
    out = pathlib.Path(path)
    flat = {_path_key(p): v.value for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    tensors: dict[str, np.ndarray] = {}
    for hf_name, ours, transform, layer in hf_mapping.param_table(cfg):
        if cfg.scan_layers and layer is not None:
            value = _host_value(flat[_scan_key(ours)][layer])
        else:
            value = _host_value(flat[ours])
        tensors[hf_name] = hf_mapping.to_hf(transform, value)
    if jax.process_index() != 0:
        return out
    out.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, arr in tensors.items():
        if size and size + arr.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = arr
        size += arr.nbytes
    if len(shards) == 1:
        _write_safetensors(out / "model.safetensors", shards[0])
    else:
        weight_map = {}
        for i, shard in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            _write_safetensors(out / fname, shard)
            weight_map.update({name: fname for name in shard})
        total = sum(a.nbytes for a in tensors.values())
        (out / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (out / "config.json").write_text(json.dumps(config_to_hf(cfg), indent=2))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    return out
