"""Host memory: keep freed memory mapped, so XLA:CPU does not page-fault its scratch space each step.

XLA:CPU allocates the temporaries of each execution as one block (599 MB for the
training benchmark's step) with `posix_memalign`, from the glibc malloc arena of
the worker thread that runs it. glibc serves a block that large with a fresh
`mmap` and `munmap`s it on free, so every step faults in every page of its
scratch space again: ≈ 150 000 minor page faults per step of the training
benchmark, which took it from 0.61 to 0.74 s on the 2-core machine it was
measured on (benchmarks/TRAINING.md).

`keep_freed_memory()` tells glibc to keep such memory: a single arena (worker
threads then allocate from the main heap, the only one that can hold blocks of
any size), no `mmap` for large blocks, and no trimming of the heap's top. A
freed block stays mapped and the next step gets the same pages back. The cost:
the process holds on to its peak heap size until it exits.

The command-line entry points call it first thing. It changes process-wide
state, so importing the package does not; call it yourself at the top of your
own script if you train or sample with this package on CPU. It is a no-op
without glibc (macOS, musl) and when GRAMR2_KEEP_FREED_MEMORY=0.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

# mallopt(3) parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# mallopt takes an int: the largest trim threshold it accepts.
_NEVER_TRIM = 2 ** 31 - 1

_applied: bool | None = None


def _glibc():
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def keep_freed_memory() -> bool:
    """Configures glibc malloc as described above; True when it took effect.

    Idempotent. Best called before the first JAX computation: threads that already
    have an arena of their own may keep using it.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("GRAMR2_KEEP_FREED_MEMORY", "1") == "0":
        return False
    libc = _glibc()
    if libc is None:
        return False
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER_TRIM))
    _applied = all(libc.mallopt(param, value) == 1 for param, value in settings)
    if not _applied:
        log.warning("mallopt refused a setting; host memory is freed as usual")
    return _applied


def minor_page_faults() -> int:
    """Minor page faults of this process so far (0 where getrusage is unavailable)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
