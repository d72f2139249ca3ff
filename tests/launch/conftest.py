"""Makes `launch` importable however pytest is started (it is a top-level folder, not installed)."""

import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
