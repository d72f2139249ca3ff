"""hostmem.keep_freed_memory: a jitted call's large scratch block is reused, not re-faulted."""

import json
import os
import subprocess
import sys

import pytest

from gramr2_jax import hostmem

# A jitted call whose 151 MB intermediate (6144 × 6144 f32) is XLA scratch memory.
_SCRIPT = r"""
import json, sys
from gramr2_jax import hostmem
applied = hostmem.keep_freed_memory()
import jax, jax.numpy as jnp
a = jax.random.normal(jax.random.key(0), (6144, 128))
f = jax.jit(lambda a: ((a @ a.T) @ a).sum())
for _ in range(2):
    f(a).block_until_ready()
before = hostmem.minor_page_faults()
for _ in range(4):
    f(a).block_until_ready()
print(json.dumps({"applied": applied, "faults_per_call": (hostmem.minor_page_faults() - before) / 4}))
"""
_SCRATCH_PAGES = 6144 * 6144 * 4 // 4096


def _faults_per_call(keep: str) -> dict:
    env = {**os.environ, "GRAMR2_KEEP_FREED_MEMORY": keep, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or hostmem._glibc() is None,
                    reason="the setting is for glibc malloc")
def test_scratch_memory_is_reused_only_with_keep_freed_memory():
    default = _faults_per_call("0")
    kept = _faults_per_call("1")
    assert not default["applied"] and kept["applied"]
    # Without it, every call faults in its whole scratch block again ...
    assert default["faults_per_call"] > 0.5 * _SCRATCH_PAGES, default
    # ... with it, the freed block's pages are handed back mapped.
    assert kept["faults_per_call"] < 0.05 * _SCRATCH_PAGES, kept


def test_opt_out_and_idempotence(monkeypatch):
    monkeypatch.setattr(hostmem, "_applied", None)
    monkeypatch.setenv("GRAMR2_KEEP_FREED_MEMORY", "0")
    assert hostmem.keep_freed_memory() is False
    monkeypatch.delenv("GRAMR2_KEEP_FREED_MEMORY")
    assert hostmem.keep_freed_memory() is False  # decided once per process
