"""Data errors with a `path:line: field: problem` message, skip reports, and a CLI helper.

Readers are strict by default: the first bad row raises `DataError`. With
``skip_invalid=True`` they keep going and count each skipped row in a `ReadReport`.
Some rows are dropped in both modes because they are valid data that cannot become a
preference pair (a tie, an HH-RLHF pair whose dialogues differ before the last turn);
those are counted as `ReadReport.dropped`, never raised.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import sys
from typing import Iterator

# The row as a whole (bad JSON, not an object, too long) rather than one field.
ROW = "<row>"


class DataError(ValueError):
    """A bad input row; ``str(err)`` is ``path:line: field: problem``."""

    def __init__(self, path: str, line: int | str, field: str, problem: str, reason: str):
        self.path, self.line, self.field, self.problem = str(path), line, field, problem
        self.reason = reason  # short code used to count skips, e.g. "wrong_type"
        super().__init__(f"{self.path}:{line}: {field}: {problem}")


class FieldError(ValueError):
    """A problem in one field of a row; the reader adds path and line."""

    def __init__(self, field: str, problem: str, reason: str):
        self.field, self.problem, self.reason = field, problem, reason
        super().__init__(f"{field}: {problem}")


@dataclasses.dataclass
class ReadReport:
    """What a reader did with one file."""

    path: str
    num_rows: int = 0  # non-blank lines / list items seen
    num_kept: int = 0  # rows (or pairs derived from them) returned
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    dropped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    messages: list[str] = dataclasses.field(default_factory=list)  # first few skips

    MAX_MESSAGES = 20

    def skip(self, err: DataError) -> None:
        self.skipped[err.reason] += 1
        if len(self.messages) < self.MAX_MESSAGES:
            self.messages.append(str(err))

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def summary(self) -> str:
        parts = [f"{self.path}: {self.num_kept} kept from {self.num_rows} rows"]
        if self.skipped:
            parts.append("skipped " + ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())))
        if self.dropped:
            parts.append("dropped " + ", ".join(f"{k}={v}" for k, v in sorted(self.dropped.items())))
        return "; ".join(parts)


@contextlib.contextmanager
def exit_on_data_error(stream=None) -> Iterator[None]:
    """For CLI entry points: print a DataError's message (no traceback) and exit 2.

    Usable as ``with exit_on_data_error(): ...`` or as a decorator
    ``@exit_on_data_error()``.
    """
    try:
        yield
    except DataError as err:
        print(f"error: {err}", file=stream or sys.stderr)
        raise SystemExit(2) from None
