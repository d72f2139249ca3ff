"""Line-level JSONL / JSON-list reading with strict or skipping validation.

Accepted: a UTF-8 BOM on the first line, CRLF line ends, blank lines (ignored),
gzip files (``.gz``). Rejected with ``path:line: <row>: ...``: invalid UTF-8,
truncated or otherwise invalid JSON, lines longer than ``max_line_chars``.
Duplicate ids are rejected naming both lines. Line numbers are 1-based; for JSON
list files the "line" is ``item N`` (1-based position in the list).
"""

from __future__ import annotations

import gzip
import json
import os
from typing import Any, BinaryIO, Callable, Iterator, TypeVar

from gramr2_jax.data.errors import ROW, DataError, FieldError, ReadReport

T = TypeVar("T")
DEFAULT_MAX_LINE_CHARS = 1_000_000
_CHUNK = 1 << 16


def _open_binary(path: str | os.PathLike) -> BinaryIO:
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def _read_line(f: BinaryIO, max_bytes: int) -> tuple[bytes, bool]:
    """One line of at most max_bytes; the rest of a longer line is consumed, not kept."""
    line = f.readline(max_bytes + 1)
    if len(line) <= max_bytes or line.endswith(b"\n"):
        return line, False
    while line and not line.endswith(b"\n"):  # skip the remainder in bounded chunks
        line = f.readline(_CHUNK)
    return b"", True


def iter_json_lines(
    path: str | os.PathLike, max_line_chars: int = DEFAULT_MAX_LINE_CHARS
) -> Iterator[tuple[int, Any | DataError]]:
    """Yields (line number, parsed JSON value or the DataError for that line)."""
    path_str = os.fspath(path)
    # UTF-8 uses at most 4 bytes a character, so a longer byte line is surely too long.
    max_bytes = 4 * max_line_chars + 2
    with _open_binary(path) as f:
        lineno = 0
        while True:
            raw, too_long = _read_line(f, max_bytes)
            if not raw and not too_long:
                return
            lineno += 1
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield lineno, DataError(
                    path_str, lineno, ROW, f"invalid UTF-8 at byte {e.start}", "invalid_utf8"
                )
                continue
            text = text.rstrip("\r\n")
            if too_long or len(text) > max_line_chars:
                yield lineno, DataError(
                    path_str, lineno, ROW,
                    f"line longer than max_line_chars={max_line_chars}", "line_too_long",
                )
                continue
            if not text.strip():
                continue
            try:
                yield lineno, json.loads(text)
            except json.JSONDecodeError as e:
                yield lineno, DataError(
                    path_str, lineno, ROW, f"invalid JSON ({e.msg} at column {e.colno})", "invalid_json"
                )


def iter_json_list(path: str | os.PathLike) -> Iterator[tuple[str, Any]]:
    """Items of a file holding one JSON list, as ("item N", value). Whole-file errors raise."""
    path_str = os.fspath(path)
    with _open_binary(path) as f:
        raw = f.read()
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise DataError(path_str, "file", ROW, f"invalid UTF-8 at byte {e.start}", "invalid_utf8") from None
    except json.JSONDecodeError as e:
        raise DataError(path_str, e.lineno, ROW, f"invalid JSON ({e.msg} at column {e.colno})", "invalid_json") from None
    if not isinstance(data, list):
        raise DataError(path_str, "file", ROW, f"expected a JSON list, got {type(data).__name__}", "not_a_list")
    for i, item in enumerate(data, start=1):
        yield f"item {i}", item


def read_rows(
    path: str | os.PathLike,
    parse: Callable[[Any, Any], Any],
    *,
    skip_invalid: bool = False,
    items: Iterator[tuple[Any, Any]] | None = None,
    max_line_chars: int = DEFAULT_MAX_LINE_CHARS,
    id_of: Callable[[T], str | None] = lambda r: getattr(r, "id", None),
    report: ReadReport | None = None,
    expand: bool = False,
) -> tuple[list[T], ReadReport]:
    """Parses each row with ``parse(value, line)``, which raises FieldError for a bad row.

    ``items`` overrides the JSONL line reader (e.g. with `iter_json_list`). A parse
    function signals a counted, non-error drop by raising `Drop`. With ``expand``
    it returns a list of records per row (e.g. several pairs from one question).
    """
    path_str = os.fspath(path)
    report = report or ReadReport(path_str)
    rows: list[T] = []
    first_line_of_id: dict[str, Any] = {}
    if items is None:
        items = iter_json_lines(path, max_line_chars)
    for line, value in items:
        report.num_rows += 1
        try:
            if isinstance(value, DataError):
                raise value
            try:
                parsed = parse(value, line)
            except FieldError as e:
                raise DataError(path_str, line, e.field, e.problem, e.reason) from None
            except Drop as d:
                report.drop(d.reason)
                continue
            new_rows = parsed if expand else [parsed]
            for row in new_rows:
                row_id = id_of(row)
                if row_id is not None and row_id in first_line_of_id:
                    first = first_line_of_id[row_id]
                    where = f"line {first}" if isinstance(first, int) else first
                    raise DataError(
                        path_str, line, "id",
                        f"duplicate id {row_id!r} (first seen at {where})", "duplicate_id",
                    )
            for row in new_rows:
                if (row_id := id_of(row)) is not None:
                    first_line_of_id[row_id] = line
        except DataError as err:
            if not skip_invalid:
                raise
            report.skip(err)
            continue
        rows.extend(new_rows)
    report.num_kept = len(rows)
    return rows, report


class Drop(Exception):
    """Raised by a parse function for a valid row that yields no pair (e.g. a tie)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)
