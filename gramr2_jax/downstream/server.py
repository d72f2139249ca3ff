"""HTTP reward server (OpenRLHF remote-RM style) with a micro-batcher in front of the judge.

Endpoints (JSON in, JSON out; errors are `{"error": "..."}` with a 4xx/5xx status):
- POST /reward   {"query": [...]} (+ optional "prompts"), or {"prompts": [...],
                 "responses": [...]}, optional "references" → {"rewards": [...]}
- POST /compare  {"prompt", "response_a", "response_b"}, each a string or a list (strings are
                 broadcast to the list length) → {"p_a": [...], "verdict": ["A"|"B"|null]}
- GET  /health   → {"status": "ok", ...counters and limits}

Concurrent requests are queued and grouped into one call of the scoring function (see
MicroBatcher); both scoring functions are called under one lock, one call at a time.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import http.server
import json
import logging
import queue
import threading
import time
import urllib.parse
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from gramr2_jax.downstream.ranking import CompareFn

RewardFn = Callable[[list[str], list[str], "list[str] | None"], Sequence[float]]
SplitQuery = Callable[[str], "tuple[str, str]"]  # raises ValueError when it cannot split

_DRAIN_LIMIT = 64 << 20  # read at most this much of a rejected body (see _Handler._drain)


@dataclasses.dataclass
class _Job:
    key: Hashable  # jobs with different keys never share a call
    rows: list[tuple]
    future: concurrent.futures.Future = dataclasses.field(
        default_factory=concurrent.futures.Future)


_STOP = _Job(key=None, rows=[])


class MicroBatcher:
    """Groups rows of concurrent requests into single calls of `score(key, rows)`.

    A batch opens with the oldest queued job and closes when it holds max_batch_rows rows, when
    max_wait_ms have passed since it opened, or when the next job would not fit. It is scored
    with one call per distinct job key (e.g. reward rows with and without references).
    Requests larger than max_batch_rows are split into chunks first.
    """

    def __init__(self, score: Callable[[Hashable, list[tuple]], Sequence[float]], *,
                 max_batch_rows: int, max_wait_ms: float, lock: threading.Lock):
        if max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be >= 1, got {max_batch_rows}")
        self._score = score
        self._max_rows = max_batch_rows
        self._max_wait_s = max_wait_ms / 1000.0
        self._lock = lock
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._stopped = False
        self.calls = 0  # scoring calls made; written by the worker thread only
        self._worker = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
        self._worker.start()

    def submit(self, key: Hashable, rows: list[tuple]) -> list[float]:
        """Blocks until every row is scored; re-raises the scoring function's error."""
        if self._stopped:
            raise RuntimeError("batcher is stopped")
        jobs = [_Job(key, rows[i:i + self._max_rows]) for i in range(0, len(rows), self._max_rows)]
        for job in jobs:
            self._queue.put(job)
        return [value for job in jobs for value in job.future.result()]

    def stop(self) -> None:
        """Scores what is already queued, then ends the worker."""
        self._stopped = True
        self._queue.put(_STOP)
        self._worker.join()

    def _run(self) -> None:
        carry = None
        while True:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is _STOP:
                return
            batch, num_rows = [first], len(first.rows)
            deadline = time.monotonic() + self._max_wait_s
            while num_rows < self._max_rows:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is _STOP or num_rows + len(job.rows) > self._max_rows:
                    carry = job  # it opens the next batch
                    break
                batch.append(job)
                num_rows += len(job.rows)
            by_key: dict[Hashable, list[_Job]] = {}
            for job in batch:
                by_key.setdefault(job.key, []).append(job)
            for jobs in by_key.values():
                self._run_batch(jobs)

    def _run_batch(self, batch: list[_Job]) -> None:
        """Scores jobs that share a key in one call and routes the values back to each job."""
        rows = [row for job in batch for row in job.rows]
        try:
            with self._lock:
                self.calls += 1
                values = np.asarray(self._score(batch[0].key, rows), dtype=np.float64).reshape(-1)
            if values.shape != (len(rows),):
                raise ValueError(f"scoring returned {values.shape[0]} values for {len(rows)} rows")
            if not np.all(np.isfinite(values)):
                raise ValueError("scoring returned non-finite values")
        except Exception as error:  # the server must outlive a failing judge
            logging.exception("scoring a batch of %d rows failed", len(rows))
            for job in batch:
                job.future.set_exception(error)
            return
        offset = 0
        for job in batch:
            job.future.set_result(values[offset:offset + len(job.rows)].tolist())
            offset += len(job.rows)


class ClientError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def split_at_marker(marker: str) -> SplitQuery:
    """Splits a full prompt+response text after the last `marker` (e.g. the assistant header)."""

    def split(query: str) -> tuple[str, str]:
        cut = query.rfind(marker)
        if cut < 0:
            raise ValueError(f"query does not contain the response marker {marker!r}")
        return query[:cut + len(marker)], query[cut + len(marker):]

    return split


def _strings(payload: dict, field: str, *, required: bool = True) -> list[str] | None:
    value = payload.get(field)
    if value is None and not required:
        return None
    if value is None:
        raise ClientError(400, f"missing field {field!r}")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ClientError(400, f"{field!r} must be a list of strings")
    return value


def _same_length(**columns: list[str] | None) -> int:
    lengths = {name: len(col) for name, col in columns.items() if col is not None}
    if len(set(lengths.values())) > 1:
        raise ClientError(400, f"fields have different lengths: {lengths}")
    return next(iter(lengths.values()))


class RewardServer:
    """The HTTP server; scoring callables are injected so tests can use small fakes."""

    def __init__(self, reward_fn: RewardFn, compare_fn: CompareFn, *, host: str = "127.0.0.1",
                 port: int = 0, max_batch_rows: int = 64, max_wait_ms: float = 5.0,
                 max_body_bytes: int = 8 << 20, max_rows_per_request: int = 1024,
                 split_query: SplitQuery | None = None):
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.app = self
        self.max_body_bytes = max_body_bytes
        self.max_rows_per_request = max_rows_per_request
        self._split_query = split_query
        self._limits = {"max_batch_rows": max_batch_rows, "max_wait_ms": max_wait_ms,
                        "max_body_bytes": max_body_bytes,
                        "max_rows_per_request": max_rows_per_request}
        lock = threading.Lock()  # one judge: never run two scoring calls at once

        def score_rewards(has_references: bool, rows: list[tuple]) -> Sequence[float]:
            prompts, responses, references = (list(col) for col in zip(*rows))
            return reward_fn(prompts, responses, references if has_references else None)

        def score_pairs(_: Hashable, rows: list[tuple]) -> Sequence[float]:
            prompts, responses_a, responses_b = (list(col) for col in zip(*rows))
            return compare_fn(prompts, responses_a, responses_b)

        self.reward_batcher = MicroBatcher(score_rewards, max_batch_rows=max_batch_rows,
                                           max_wait_ms=max_wait_ms, lock=lock)
        self.compare_batcher = MicroBatcher(score_pairs, max_batch_rows=max_batch_rows,
                                            max_wait_ms=max_wait_ms, lock=lock)
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "RewardServer":
        """Serves in a background thread (a second call does nothing)."""
        if self._thread is not None:
            return self
        # A short poll interval makes stop() quick (shutdown waits for the next poll).
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        name="reward-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops accepting, lets in-flight requests finish, then stops the batchers."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()  # joins the handler threads, which still need the batchers
        self.reward_batcher.stop()
        self.compare_batcher.stop()

    def __enter__(self) -> "RewardServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # Endpoint bodies: payload → response object; raise ClientError for a 4xx.

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "reward_calls": self.reward_batcher.calls,
                "compare_calls": self.compare_batcher.calls, **self._limits}

    def reward(self, payload: dict) -> dict[str, Any]:
        references = _strings(payload, "references", required=False)
        if "responses" in payload:
            prompts, responses = _strings(payload, "prompts"), _strings(payload, "responses")
        elif "query" in payload:
            prompts, responses = self._split_queries(payload)
        else:
            raise ClientError(400, "expected 'query', or 'prompts' and 'responses'")
        num_rows = _same_length(prompts=prompts, responses=responses, references=references)
        self._check_rows(num_rows)
        rows = list(zip(prompts, responses, references or [None] * num_rows))
        return {"rewards": self.reward_batcher.submit(references is not None, rows)}

    def compare(self, payload: dict) -> dict[str, Any]:
        fields = ("prompt", "response_a", "response_b")
        columns = {}
        for field in fields:
            value = payload.get(field)
            if value is None:
                raise ClientError(400, f"missing field {field!r}")
            if not isinstance(value, (str, list)) or (
                    isinstance(value, list) and not all(isinstance(v, str) for v in value)):
                raise ClientError(400, f"{field!r} must be a string or a list of strings")
            columns[field] = value
        lists = {f: v for f, v in columns.items() if isinstance(v, list)}
        num_rows = _same_length(**lists) if lists else 1
        self._check_rows(num_rows)
        rows = list(zip(*[[v] * num_rows if isinstance(v, str) else v
                          for v in columns.values()]))
        p_a = self.compare_batcher.submit(None, rows)
        # An exact 0.5 has no preferred side: report no verdict rather than pick one.
        verdicts = ["A" if p > 0.5 else "B" if p < 0.5 else None for p in p_a]
        return {"p_a": p_a, "verdict": verdicts}

    def _split_queries(self, payload: dict) -> tuple[list[str], list[str]]:
        queries = _strings(payload, "query")
        if "prompts" in payload:  # OpenRLHF sends the prompts beside the full queries
            prompts = _strings(payload, "prompts")
            _same_length(query=queries, prompts=prompts)
            if not all(q.startswith(p) for q, p in zip(queries, prompts)):
                raise ClientError(400, "each query must start with its prompt")
            return prompts, [q[len(p):] for q, p in zip(queries, prompts)]
        if self._split_query is None:
            raise ClientError(400, "query-only requests need 'prompts' too, or a server started "
                                   "with a response marker")
        try:
            pairs = [self._split_query(q) for q in queries]
        except ValueError as error:
            raise ClientError(400, str(error)) from None
        return [p for p, _ in pairs], [r for _, r in pairs]

    def _check_rows(self, num_rows: int) -> None:
        if num_rows > self.max_rows_per_request:
            raise ClientError(413, f"{num_rows} rows exceed the limit of "
                                   f"{self.max_rows_per_request} per request")


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = False  # so server_close() waits for in-flight requests
    request_queue_size = 128  # listen backlog: bursts of clients connect without SYN retries
    app: RewardServer


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HTTPServer
    timeout = 30  # seconds a silent client may hold a handler thread
    _body_read = False

    _ROUTES = {"/health": ("GET", "health"), "/reward": ("POST", "reward"),
               "/compare": ("POST", "compare")}

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        path = urllib.parse.urlsplit(self.path).path
        app = self.server.app
        try:
            if path not in self._ROUTES:
                raise ClientError(404, f"unknown path {path!r}")
            allowed, endpoint = self._ROUTES[path]
            if method != allowed:
                raise ClientError(405, f"{path} accepts {allowed} only")
            if method == "GET":
                self._send(200, app.health())
            else:
                self._send(200, getattr(app, endpoint)(self._read_json()))
        except ClientError as error:
            self._drain()
            headers = {"Allow": self._ROUTES[path][0]} if error.status == 405 else {}
            self._send(error.status, {"error": str(error)}, headers)
        except Exception as error:  # scoring failures: report, keep serving
            self._send(500, {"error": f"scoring failed: {type(error).__name__}: {error}"})

    def _content_length(self) -> int | None:
        try:
            return int(self.headers.get("Content-Length", ""))
        except ValueError:
            return None

    def _read_json(self) -> dict:
        length = self._content_length()
        if length is None or length < 0:
            raise ClientError(411, "a valid Content-Length header is required")
        if length > self.server.app.max_body_bytes:
            raise ClientError(413, f"body of {length} bytes exceeds the limit of "
                                   f"{self.server.app.max_body_bytes}")
        self._body_read = True
        try:
            payload = json.loads(self.rfile.read(length))
        except (ValueError, RecursionError) as error:
            raise ClientError(400, f"invalid JSON: {error}") from None
        if not isinstance(payload, dict):
            raise ClientError(400, "the body must be a JSON object")
        return payload

    def _drain(self) -> None:
        """Reads an unread request body, so closing the socket does not reset the connection
        before the client has read our error reply."""
        length = self._content_length()
        if self._body_read or not length or length > _DRAIN_LIMIT:
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                return
            length -= len(chunk)

    def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        logging.debug("%s - %s", self.address_string(), format % args)
