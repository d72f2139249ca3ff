"""Shared test fixtures.

Real data, models and tokenizers are read in place from the shared folder
(env GRAMR2_SHARED, default ../shared next to the repo) through `shared_dir`;
tests that need it skip with a reason when it is absent.
"""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _shared_path() -> pathlib.Path:
    return pathlib.Path(os.environ.get("GRAMR2_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    path = _shared_path()
    if not (path / "SPEC.md").exists():
      pytest.skip(f"shared folder not found at {path} (set GRAMR2_SHARED)")
    return path
