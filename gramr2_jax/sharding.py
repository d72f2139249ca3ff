"""Mesh construction and the logical-axis → mesh-axis rules.

Model code names tensor dimensions with *logical* axes only ('embed', 'mlp',
'heads', 'activation_batch', ...). This module is the one place that knows the
physical mesh axes ('data', 'fsdp', 'tensor') and maps between the two with an
ordered rule list from config. A mesh axis that does not divide a dimension is
dropped for that dimension (it is replicated there instead), so one rule set
serves every model size; `param_stats` reports how much ends up replicated.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from typing import Any, Callable, Iterable, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# (logical axis, mesh axes) — the first rule for a logical axis wins.
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_kv_heads", "tensor"),
    ("activation_mlp", "tensor"),
    ("activation_vocab", "tensor"),
    ("cache_batch", ("data", "fsdp")),
    ("cache_sequence", None),
    ("cache_kv_heads", "tensor"),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("layers", None),
    ("norm", None),
)

_RULES: contextvars.ContextVar[tuple | None] = contextvars.ContextVar(
    "gramr2_sharding_rules", default=None)


def normalize_rules(rules: Iterable[Sequence[Any]] | None) -> tuple[tuple[str, Any], ...]:
    """Rules from config (lists of [name, axes]) as a tuple of (name, axes)."""
    if rules is None:
        return DEFAULT_RULES
    out = []
    for i, rule in enumerate(rules):
        if len(rule) != 2:
            raise ValueError(f"sharding.rules[{i}]: expected [logical_name, mesh_axes], got {rule!r}")
        name, axes = rule
        if isinstance(axes, list):
            axes = tuple(axes)
        for axis in (axes if isinstance(axes, tuple) else (axes,)):
            if axis is not None and axis not in MESH_AXES:
                raise ValueError(f"sharding.rules[{i}]: unknown mesh axis {axis!r} "
                                 f"(mesh axes are {MESH_AXES})")
        out.append((name, axes))
    return tuple(out)


def resolve_mesh_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Fills in the one -1 so the product equals num_devices."""
    shape = [int(s) for s in shape]
    if len(shape) != len(MESH_AXES):
        raise ValueError(f"mesh.shape: expected {len(MESH_AXES)} sizes for {MESH_AXES}, got {shape}")
    if shape.count(-1) > 1:
        raise ValueError(f"mesh.shape: at most one -1 allowed, got {shape}")
    if any(s == 0 or s < -1 for s in shape):
        raise ValueError(f"mesh.shape: sizes must be positive or -1, got {shape}")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if num_devices % known:
            raise ValueError(f"mesh.shape: {shape} does not divide {num_devices} devices")
        shape[shape.index(-1)] = num_devices // known
    if math.prod(shape) != num_devices:
        raise ValueError(f"mesh.shape: {shape} uses {math.prod(shape)} devices, "
                         f"but {num_devices} are available")
    return tuple(shape)


def make_mesh(shape: Sequence[int] = (-1, 1, 1), devices=None) -> jax.sharding.Mesh:
    """A (data, fsdp, tensor) mesh over all (or the given) devices."""
    devices = jax.devices() if devices is None else devices
    resolved = resolve_mesh_shape(shape, len(devices))
    return jax.make_mesh(resolved, MESH_AXES, devices=devices,
                         axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def local_mesh() -> jax.sharding.Mesh | None:
    """A data-parallel mesh over this process's own devices; None with one device.

    For work each host does alone, on host-local arrays: labelling its own shards of
    the pool, proving, evaluating (see host_devices.py for why a CPU host has several).
    """
    devices = jax.local_devices()
    return make_mesh((-1, 1, 1), devices) if len(devices) > 1 else None


def abstract_mesh(shape: Sequence[int]) -> jax.sharding.AbstractMesh:
    """A mesh of the given size with no devices: for planning big configs here."""
    return jax.sharding.AbstractMesh(
        tuple(shape), MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def logical_to_spec(names: Sequence[str | None], shape: Sequence[int] | None,
                    mesh_shape: dict[str, int], rules=None) -> P:
    """PartitionSpec for a tensor with the given logical axis names.

    Each mesh axis is used at most once; an axis that does not divide the
    dimension (given `shape`) is skipped, leaving that part replicated.
    """
    rules = normalize_rules(rules) if rules is not None else (_RULES.get() or DEFAULT_RULES)
    table = {}
    for name, axes in rules:
        table.setdefault(name, axes)
    used: set[str] = set()
    spec = []
    for dim, name in enumerate(names):
        axes = table.get(name) if name is not None else None
        axes = () if axes is None else (axes if isinstance(axes, tuple) else (axes,))
        chosen = []
        size = shape[dim] if shape is not None else None
        for axis in axes:
            n = mesh_shape.get(axis, 1)
            if axis in used or n == 1:
                continue
            if size is not None:
                if size % n:
                    continue
                size //= n
            chosen.append(axis)
            used.add(axis)
        spec.append(None if not chosen else chosen[0] if len(chosen) == 1 else tuple(chosen))
    return P(*spec)


@contextlib.contextmanager
def use_rules(rules):
    """Makes `rules` the ones `constrain` uses while tracing model code."""
    token = _RULES.set(normalize_rules(rules))
    try:
        yield
    finally:
        _RULES.reset(token)


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """Sharding constraint on an activation by logical names (no-op without a mesh)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or all(size == 1 for size in mesh.shape.values()):
        return x
    spec = logical_to_spec(names, x.shape, dict(mesh.shape))
    return jax.lax.with_sharding_constraint(x, spec)


def _logical_axes(var: nnx.Variable) -> tuple:
    axes = var.get_metadata().get("logical_axes")
    if axes is None:
        return (None,) * len(var.value.shape)
    return tuple(axes)


def state_specs(state, mesh_shape: dict[str, int], rules=None):
    """PartitionSpecs for every leaf of an nnx State (abstract or concrete)."""
    return jax.tree.map(
        lambda v: v.replace(logical_to_spec(_logical_axes(v), v.value.shape, mesh_shape, rules)),
        state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def state_shardings(state, mesh: jax.sharding.Mesh, rules=None):
    """NamedShardings for every leaf of an nnx State."""
    specs = state_specs(state, dict(mesh.shape), rules)
    return jax.tree.map(lambda v: v.replace(NamedSharding(mesh, v.value)), specs,
                        is_leaf=lambda x: isinstance(x, nnx.Variable))


def create_sharded_module(make: Callable[[], nnx.Module], mesh: jax.sharding.Mesh,
                          rules=None) -> nnx.Module:
    """Builds a module directly into its shardings (never materialized unsharded).

    eval_shape → logical axes → NamedShardings → jax.jit(init, out_shardings).
    """
    abstract = nnx.eval_shape(make)
    graphdef, abstract_state = nnx.split(abstract)
    shardings = state_shardings(abstract_state, mesh, rules)

    def init():
        return nnx.state(make())

    with jax.set_mesh(mesh), use_rules(rules):
        state = jax.jit(init, out_shardings=shardings)()
    return nnx.merge(graphdef, state)


@dataclasses.dataclass(frozen=True)
class ParamStats:
    total_params: int
    total_bytes: int
    per_device_bytes: int  # the most-loaded device
    replicated_fraction: float  # share of parameters stored whole on every device
    largest_replicated: tuple[str, tuple[int, ...]] | None  # biggest fully replicated tensor


def param_stats(state, mesh_shape: dict[str, int], rules=None) -> ParamStats:
    """Per-device parameter bytes from shapes and specs alone (nothing allocated)."""
    total = total_bytes = per_device = replicated = 0
    largest: tuple[int, str, tuple[int, ...]] | None = None
    for path, var in nnx.to_flat_state(state):
        shape, dtype = var.value.shape, np.dtype(var.value.dtype)
        size = math.prod(shape)
        spec = logical_to_spec(_logical_axes(var), shape, mesh_shape, rules)
        shards = 1
        for entry in spec:
            for axis in (entry if isinstance(entry, tuple) else (entry,)):
                if axis is not None:
                    shards *= mesh_shape[axis]
        total += size
        total_bytes += size * dtype.itemsize
        per_device += -(-size // shards) * dtype.itemsize
        if shards == 1:
            replicated += size
            if largest is None or size > largest[0]:
                largest = (size, "/".join(map(str, path)), tuple(shape))
    return ParamStats(
        total_params=total, total_bytes=total_bytes, per_device_bytes=per_device,
        replicated_fraction=replicated / max(total, 1),
        largest_replicated=None if largest is None else largest[1:])
