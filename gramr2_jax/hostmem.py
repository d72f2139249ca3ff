"""Host memory for the CPU backend: keep freed memory mapped, and back it with huge pages.

Two costs outside XLA showed up in profiles of the CPU train step and decode loop:

- XLA:CPU allocates each execution's temporaries as one block (599 MB for the
  training benchmark's step) with `posix_memalign`, from the glibc malloc arena
  of the worker thread that runs it. glibc serves a block that large with a
  fresh `mmap` and `munmap`s it on free, so every step faults in all of its
  scratch pages again: ≈ 174 000 minor page faults per step, ≈ 17 % of it.
- Weights live in 4 KiB pages. A batch-1 decode step streams all 166 MB of the
  sampling benchmark's weights, one TLB miss per page.

The fix is glibc's malloc tunables: one arena (worker threads then allocate
from the main heap, the only one that can hold blocks of any size), no `mmap`,
no trimming of the heap's top (freed blocks stay mapped and are reused), and
transparent huge pages for the heap (`glibc.malloc.hugetlb=1`, glibc ≥ 2.35;
older versions ignore it). Tunables are read only when a process starts, so
`configure_process()` — called by every command-line entry point in its
`__main__` block — re-executes the same command line once with them set (same
pid, same arguments; nothing has run yet). `keep_freed_memory()` applies the
first three in-process with `mallopt`, for notebooks and your own scripts.
The cost: the process keeps its peak heap size until it exits.

Only where JAX computes on the host: skipped when an accelerator plugin (libtpu,
a CUDA/ROCm PJRT plugin) is installed unless JAX_PLATFORMS=cpu, off glibc
(macOS, musl), and when GRAMR2_TUNE_MALLOC=0. Measurements:
benchmarks/TRAINING.md and benchmarks/SAMPLING.md.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import logging
import os
import sys

log = logging.getLogger(__name__)

TUNABLES = ("glibc.malloc.arena_max=1", "glibc.malloc.mmap_max=0",
            f"glibc.malloc.trim_threshold={2 ** 40}", "glibc.malloc.hugetlb=1")
_OPT_OUT = "GRAMR2_TUNE_MALLOC"
_REEXECUTED = "GRAMR2_MALLOC_REEXEC"

# mallopt(3) parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_NEVER_TRIM = 2 ** 31 - 1  # mallopt takes an int

_applied: bool | None = None


def _glibc():
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):  # TypeError: Windows has no process-wide handle
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def _accelerator_plugin_installed() -> bool:
    if importlib.util.find_spec("libtpu") is not None:
        return True
    return any(True for _ in importlib.metadata.entry_points(group="jax_plugins"))


def jax_runs_on_cpu() -> bool:
    """Whether JAX will compute on the CPU: JAX_PLATFORMS says so, or no accelerator
    plugin is installed. Needs no JAX import, so it can run before JAX starts."""
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms:
        return platforms.split(",")[0].strip() == "cpu"
    return not _accelerator_plugin_installed()


def host_computes() -> bool:
    """Whether these settings apply: glibc, not opted out, and JAX will run on the CPU."""
    if os.environ.get(_OPT_OUT, "1") == "0" or _glibc() is None:
        return False
    return jax_runs_on_cpu()


def tunables_active() -> bool:
    """Whether this process started with all of TUNABLES in GLIBC_TUNABLES."""
    active = set(os.environ.get("GLIBC_TUNABLES", "").split(":"))
    return all(t in active for t in TUNABLES)


def configure_process() -> None:
    """For `__main__` blocks: re-executes the command line once with TUNABLES set.

    Where that cannot happen (no `sys.orig_argv`, exec fails, or the tunables did
    not show up after it), falls back to `keep_freed_memory()`.
    """
    if tunables_active():
        os.environ.pop(_REEXECUTED, None)  # children start fresh (they inherit the tunables)
        return
    if not host_computes():
        return
    argv = getattr(sys, "orig_argv", None)
    if argv and _REEXECUTED not in os.environ:
        env = dict(os.environ)
        env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES"), *TUNABLES]))
        env[_REEXECUTED] = "1"
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execve(sys.executable, argv, env)
        except OSError as e:
            log.warning("could not re-execute with GLIBC_TUNABLES (%s); using mallopt", e)
    keep_freed_memory()


def keep_freed_memory() -> bool:
    """In-process `mallopt`: one arena, no mmap, no trimming; True when it took effect.

    Idempotent. Best called before the first JAX computation: threads that already
    have an arena of their own may keep using it. Huge pages need `configure_process`.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not host_computes():
        return False
    libc = _glibc()
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER_TRIM))
    _applied = all(libc.mallopt(param, value) == 1 for param, value in settings)
    if not _applied:
        log.warning("mallopt refused a setting; host memory is freed as usual")
    return _applied


def describe() -> dict:
    """What is in effect, for benchmark reports."""
    return {"glibc_tunables": tunables_active(), "mallopt": bool(_applied)}


def minor_page_faults() -> int:
    """Minor page faults of this process so far (0 where getrusage is unavailable)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
