"""Shared test fixtures.

Real data, models and tokenizers are read in place from the shared folder
(env GRAMR2_SHARED, default ../shared next to the repo) through `shared_dir`;
tests that need it skip with a reason when it is absent.
"""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

# Tests compare code paths token for token. On a GPU, JAX's default precision multiplies
# f32 in TF32, and paths with different matmul shapes then round apart (13 sampling tests
# failed that way on an H200, SAMPLING.md). f32 on CPU is unchanged. Set before any test
# imports JAX; subprocess tests inherit it.
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
# The pipeline's command line keeps a persistent compilation cache in ~/.cache by
# default (main.py --compilation_cache); tests write nothing outside their tmp dirs.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", "")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess that runs JAX on the CPU: this process's (with the
    settings above), JAX_PLATFORMS=cpu, then `extra`."""
    return {**os.environ, "JAX_PLATFORMS": "cpu", **extra}


def _shared_path() -> pathlib.Path:
    return pathlib.Path(os.environ.get("GRAMR2_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    path = _shared_path()
    if not (path / "SPEC.md").exists():
      pytest.skip(f"shared folder not found at {path} (set GRAMR2_SHARED)")
    return path
