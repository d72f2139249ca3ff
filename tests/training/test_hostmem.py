"""hostmem: XLA:CPU scratch memory is reused, not re-faulted; buffers are in huge pages."""

import ctypes
import json
import pathlib
import subprocess
import sys

import pytest

from gramr2_jax import hostmem
from tests.conftest import subprocess_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or hostmem._glibc() is None,
                                reason="the settings are for glibc malloc")

# A jitted call whose 151 MB intermediate (6144 × 6144 f32) is XLA scratch memory.
_SCRIPT = r"""
import json, os, sys
print(json.dumps({"start": os.getpid()}), flush=True)
from gramr2_jax import hostmem
if sys.argv[1] == "configure_process":
    hostmem.configure_process()
else:
    hostmem.keep_freed_memory()
import jax, jax.numpy as jnp
a = jax.random.normal(jax.random.key(0), (6144, 128))
f = jax.jit(lambda a: ((a @ a.T) @ a).sum())
for _ in range(2):
    f(a).block_until_ready()
before = hostmem.minor_page_faults()
for _ in range(4):
    f(a).block_until_ready()
faults = (hostmem.minor_page_faults() - before) / 4
weights = jnp.ones(64 * 2**20 // 4).block_until_ready()  # 64 MiB
address = weights.unsafe_buffer_pointer()
madvised = None  # whether the buffer's mapping is marked for huge pages (VmFlags "hg")
for line in open("/proc/self/smaps"):
    if "-" in line.split()[0] and ":" not in line.split()[0]:
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        inside = start <= address < end
    elif line.startswith("VmFlags") and inside:
        madvised = "hg" in line.split()[1:]
print(json.dumps({"pid": os.getpid(), "faults_per_call": faults, "huge_pages": madvised,
                  **hostmem.describe()}))
"""
_SCRATCH_PAGES = 6144 * 6144 * 4 // 4096


def _run(how: str, tune: str) -> tuple[list[int], dict]:
    env = subprocess_env(GRAMR2_TUNE_MALLOC=tune)
    for name in ("XLA_FLAGS", "GLIBC_TUNABLES", "GRAMR2_MALLOC_REEXEC"):
        env.pop(name, None)
    out = subprocess.run([sys.executable, "-c", _SCRIPT, how], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return [line["start"] for line in lines if "start" in line], lines[-1]


def _glibc_madvises_huge_pages() -> bool:
    """glibc >= 2.35 (the hugetlb tunable) on a kernel with THP not set to never."""
    version = hostmem._glibc()
    version.gnu_get_libc_version.restype = ctypes.c_char_p
    major, minor = (int(x) for x in version.gnu_get_libc_version().decode().split(".")[:2])
    path = pathlib.Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return (major, minor) >= (2, 35) and path.exists() and "[never]" not in path.read_text()


def test_configure_process_reexecutes_once_and_reuses_scratch_memory():
    starts, default = _run("configure_process", "0")
    assert len(starts) == 1 and not default["glibc_tunables"] and not default["mallopt"]
    # Without the settings, every call faults in its whole scratch block again ...
    assert default["faults_per_call"] > 0.5 * _SCRATCH_PAGES, default

    starts, tuned = _run("configure_process", "1")
    # ... with them, the command line ran twice in the same process (exec keeps the pid) ...
    assert len(starts) == 2 and starts[0] == starts[1] == tuned["pid"], (starts, tuned)
    assert tuned["glibc_tunables"]
    # ... and the freed block's pages come back mapped.
    assert tuned["faults_per_call"] < 0.05 * _SCRATCH_PAGES, tuned
    # ... and XLA's buffers sit in a mapping marked for transparent huge pages.
    if _glibc_madvises_huge_pages():
        assert default["huge_pages"] is False and tuned["huge_pages"] is True, (default, tuned)


def test_keep_freed_memory_in_process():
    starts, kept = _run("keep_freed_memory", "1")
    assert len(starts) == 1 and kept["mallopt"] and not kept["glibc_tunables"]
    assert kept["faults_per_call"] < 0.05 * _SCRATCH_PAGES, kept


def test_opt_out_and_platforms(monkeypatch):
    monkeypatch.setattr(hostmem, "_applied", None)
    monkeypatch.setenv("GRAMR2_TUNE_MALLOC", "0")
    assert not hostmem.host_computes()
    assert hostmem.keep_freed_memory() is False
    monkeypatch.delenv("GRAMR2_TUNE_MALLOC")
    monkeypatch.setenv("JAX_PLATFORMS", "tpu,cpu")
    assert not hostmem.host_computes()
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert hostmem.host_computes()
