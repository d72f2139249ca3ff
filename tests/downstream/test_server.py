"""The reward server over 127.0.0.1 with a small deterministic fake judge."""

import http.client
import json
import os
import pathlib
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

from gramr2_jax.downstream.server import RewardServer, split_at_marker


class FakeJudge:
    """reward = len(response) (+100 * len(reference)); p_a compares response lengths."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.reward_calls: list[int] = []  # rows per call
        self.compare_calls: list[int] = []
        self.started = threading.Event()

    def reward(self, prompts, responses, references):
        self.reward_calls.append(len(responses))
        self.started.set()
        time.sleep(self.delay_s)
        if any("boom" in r for r in responses):
            raise RuntimeError("judge exploded")
        if any("short" in r for r in responses):
            return [0.0]  # wrong length: a broken judge
        refs = references or [""] * len(responses)
        return [len(r) + 100.0 * len(ref) for r, ref in zip(responses, refs)]

    def compare(self, prompts, responses_a, responses_b):
        self.compare_calls.append(len(prompts))
        return [0.9 if len(a) > len(b) else 0.1 if len(a) < len(b) else 0.5
                for a, b in zip(responses_a, responses_b)]


def make_server(judge, **options) -> RewardServer:
    return RewardServer(judge.reward, judge.compare, **options).start()


def call(server, method, path, payload=None, *, body=None, headers=None):
    """Returns (status, decoded JSON, response headers)."""
    parts = urllib.parse.urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    if payload is not None:
        body = json.dumps(payload).encode()
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read()), dict(response.getheaders())
    finally:
        connection.close()


@pytest.fixture
def judge():
    return FakeJudge()


@pytest.fixture
def server(judge):
    server = make_server(judge, max_rows_per_request=8, max_body_bytes=4096)
    yield server
    server.stop()


def test_health(server):
    status, body, _ = call(server, "GET", "/health")
    assert status == 200 and body["status"] == "ok"
    assert body["max_rows_per_request"] == 8


def test_reward_with_prompts_responses_and_references(server):
    status, body, _ = call(server, "POST", "/reward",
                           {"prompts": ["p", "q"], "responses": ["abc", "de"]})
    assert (status, body) == (200, {"rewards": [3.0, 2.0]})
    status, body, _ = call(server, "POST", "/reward", {"prompts": ["p"], "responses": ["abc"],
                                                       "references": ["xy"]})
    assert (status, body) == (200, {"rewards": [203.0]})
    status, body, _ = call(server, "POST", "/reward", {"prompts": [], "responses": []})
    assert (status, body) == (200, {"rewards": []})


def test_reward_with_openrlhf_queries(server):
    status, body, _ = call(server, "POST", "/reward",
                           {"query": ["Q: hi A: hello", "Q: x A: yy"],
                            "prompts": ["Q: hi A:", "Q: x A:"]})
    assert (status, body) == (200, {"rewards": [6.0, 3.0]})
    status, body, _ = call(server, "POST", "/reward", {"query": ["Q: hi A: hello"]})
    assert status == 400 and "prompts" in body["error"]


def test_query_only_with_a_response_marker(judge):
    with RewardServer(judge.reward, judge.compare,
                      split_query=split_at_marker("<assistant>")) as server:
        status, body, _ = call(server, "POST", "/reward",
                               {"query": ["<assistant>a<assistant>four"]})
        assert (status, body) == (200, {"rewards": [4.0]})
        status, body, _ = call(server, "POST", "/reward", {"query": ["no marker"]})
        assert status == 400 and "marker" in body["error"]


def test_compare_single_and_lists(server):
    status, body, _ = call(server, "POST", "/compare",
                           {"prompt": "p", "response_a": "long", "response_b": "s"})
    assert (status, body) == (200, {"p_a": [0.9], "verdict": ["A"]})
    status, body, _ = call(server, "POST", "/compare",
                           {"prompt": "p", "response_a": ["a", "bb", "cc"],
                            "response_b": ["bb", "a", "dd"]})
    assert status == 200
    assert body == {"p_a": [0.1, 0.9, 0.5], "verdict": ["B", "A", None]}


def test_concurrent_requests_share_scoring_calls():
    judge = FakeJudge()
    server = make_server(judge, max_batch_rows=64, max_wait_ms=300)
    num_clients = 12
    barrier = threading.Barrier(num_clients)
    replies = [None] * num_clients

    def client(k):
        responses = ["x" * (k + 1), "y" * (k + 2), "z" * (k + 3)]
        payload = {"prompts": ["p"] * 3, "responses": responses}
        if k % 2:  # odd clients send references: those rows must get their own call
            payload["references"] = ["r"] * 3
        barrier.wait(timeout=10)
        replies[k] = call(server, "POST", "/reward", payload)[:2]

    threads = [threading.Thread(target=client, args=(k,)) for k in range(num_clients)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
    finally:
        server.stop()
    for k, (status, body) in enumerate(replies):
        bonus = 100.0 if k % 2 else 0.0
        assert status == 200
        assert body["rewards"] == [k + 1 + bonus, k + 2 + bonus, k + 3 + bonus]
    assert sum(judge.reward_calls) == 3 * num_clients
    # 12 requests in a 300 ms window: one call per reference/no-reference group, plus slack
    # for a slow thread start.
    assert len(judge.reward_calls) <= 4


def test_large_requests_are_split_into_batches_of_max_rows(judge):
    with RewardServer(judge.reward, judge.compare, max_batch_rows=4) as server:
        responses = ["x" * n for n in range(10)]
        status, body, _ = call(server, "POST", "/reward",
                               {"prompts": ["p"] * 10, "responses": responses})
        assert status == 200 and body["rewards"] == [float(n) for n in range(10)]
        assert judge.reward_calls == [4, 4, 2]
        status, body, _ = call(server, "GET", "/health")
        assert body["reward_calls"] == 3


@pytest.mark.parametrize("method, path, payload, status, message", [
    ("POST", "/reward", {"responses": ["a"]}, 400, "missing field 'prompts'"),
    ("POST", "/reward", {"foo": 1}, 400, "expected 'query'"),
    ("POST", "/reward", {"prompts": "p", "responses": ["a"]}, 400, "list of strings"),
    ("POST", "/reward", {"prompts": ["p"], "responses": [1]}, 400, "list of strings"),
    ("POST", "/reward", {"prompts": ["p"], "responses": ["a", "b"]}, 400, "different lengths"),
    ("POST", "/reward", {"query": ["ab"], "prompts": ["x"]}, 400, "start with its prompt"),
    ("POST", "/reward", {"prompts": ["p"] * 9, "responses": ["a"] * 9}, 413, "limit of 8"),
    ("POST", "/compare", {"prompt": "p", "response_a": "a"}, 400, "missing field"),
    ("POST", "/compare", {"prompt": 3, "response_a": "a", "response_b": "b"}, 400, "string"),
    ("POST", "/compare", {"prompt": "p", "response_a": ["a"], "response_b": ["b", "c"]},
     400, "different lengths"),
    ("POST", "/compare", {"prompt": "p", "response_a": ["a"] * 9, "response_b": "b"},
     413, "limit"),
    ("POST", "/nowhere", {}, 404, "unknown path"),
    ("GET", "/nowhere", None, 404, "unknown path"),
    ("GET", "/reward", None, 405, "POST only"),
    ("POST", "/health", {}, 405, "GET only"),
    ("DELETE", "/compare", None, 405, "POST only"),
])
def test_client_errors(server, judge, method, path, payload, status, message):
    got_status, body, headers = call(server, method, path, payload)
    assert got_status == status
    assert message in body["error"]
    if status == 405:
        assert headers["Allow"] in ("GET", "POST")
    assert judge.reward_calls == [] and judge.compare_calls == []


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "invalid JSON"),
    (b"\xff\xfe\x00", 400, "invalid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b"[" * 3000 + b"]" * 3000, 413, "exceeds the limit"),  # over max_body_bytes=4096
])
def test_bad_bodies(server, body, status, message):
    got_status, reply, _ = call(server, "POST", "/reward", body=body)
    assert got_status == status and message in reply["error"]


def test_missing_content_length(server):
    parts = urllib.parse.urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"POST /reward HTTP/1.0\r\nHost: test\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 411")
    assert "Content-Length" in json.loads(body)["error"]


def test_scoring_failure_is_a_500_and_the_server_stays_up(server, judge):
    status, body, _ = call(server, "POST", "/reward", {"prompts": ["p"], "responses": ["boom"]})
    assert status == 500 and "judge exploded" in body["error"]
    status, body, _ = call(server, "POST", "/reward",
                           {"prompts": ["p", "p"], "responses": ["a", "short"]})
    assert status == 500 and "1 values for 2 rows" in body["error"]
    assert call(server, "GET", "/health")[0] == 200
    status, body, _ = call(server, "POST", "/reward", {"prompts": ["p"], "responses": ["ok"]})
    assert (status, body) == (200, {"rewards": [2.0]})


def test_stop_answers_in_flight_requests_then_closes():
    judge = FakeJudge(delay_s=0.3)
    server = make_server(judge)
    replies = []
    client = threading.Thread(target=lambda: replies.append(call(
        server, "POST", "/reward", {"prompts": ["p"], "responses": ["abc"]})[:2]))
    client.start()
    assert judge.started.wait(timeout=10)  # the request is inside the judge now
    server.stop()
    client.join(timeout=10)
    assert replies == [(200, {"rewards": [3.0]})]
    with pytest.raises(OSError):
        call(server, "GET", "/health")


# serve.py imports gramr2_jax.judge inside main(); the stub stands in for the real judge.
SERVE_WITH_STUB_JUDGE = """
import sys, types
import numpy as np

class Judge:
    @classmethod
    def from_pretrained(cls, path):
        return cls()

    def reward(self, prompts, responses, references=None):
        return np.array([float(len(r)) for r in responses])

    def compare_probs(self, prompts, responses_a, responses_b):
        return np.full(len(prompts), 0.25)

stub = types.ModuleType("gramr2_jax.judge")
stub.Judge = Judge
sys.modules["gramr2_jax.judge"] = stub
from absl import app
from gramr2_jax import serve
app.run(serve.main, argv=["serve", "--model=/stub", "--port=0"])
"""


def read_served_url(process, timeout_s: float) -> str:
    selector = selectors.DefaultSelector()
    selector.register(process.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if selector.select(timeout=deadline - time.monotonic()):
            line = process.stderr.readline()
            if not line:
                break
            if match := re.search(r"at (http://\S+)", line):
                return match.group(1)
    raise AssertionError("serve.py did not report its address")


def test_serve_cli_serves_and_stops_on_sigterm():
    repo = pathlib.Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    process = subprocess.Popen([sys.executable, "-c", SERVE_WITH_STUB_JUDGE], env=env,
                               stderr=subprocess.PIPE, text=True)
    try:
        url = read_served_url(process, timeout_s=20)
        server = type("Address", (), {"url": url})
        assert call(server, "GET", "/health")[0] == 200
        status, body, _ = call(server, "POST", "/compare",
                               {"prompt": "p", "response_a": "a", "response_b": "b"})
        assert (status, body) == (200, {"p_a": [0.25], "verdict": ["B"]})
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
