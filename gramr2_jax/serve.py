"""Serves a trained judge as an HTTP reward model (see gramr2_jax/downstream/server.py).

    python -m gramr2_jax.serve --model=DIR --host=127.0.0.1 --port=5000

Stops gracefully on SIGINT / SIGTERM: in-flight requests are answered first.
"""

import signal
import threading

from absl import app, flags, logging

from gramr2_jax.downstream import server as server_lib

_MODEL = flags.DEFINE_string("model", None, "Judge model directory (Hugging Face format).",
                             required=True)
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to bind.")
_PORT = flags.DEFINE_integer("port", 5000, "Port to bind (0: any free port).")
_MAX_BATCH_ROWS = flags.DEFINE_integer("max_batch_rows", 64, "Most rows in one judge call.")
_MAX_WAIT_MS = flags.DEFINE_float("max_wait_ms", 5.0,
                                  "How long a batch waits for more requests to join it.")
_MAX_ROWS_PER_REQUEST = flags.DEFINE_integer("max_rows_per_request", 1024,
                                             "Larger requests get 413.")
_MAX_BODY_BYTES = flags.DEFINE_integer("max_body_bytes", 8 << 20, "Larger bodies get 413.")
_RESPONSE_MARKER = flags.DEFINE_string(
    "response_marker", None,
    "Text after which the response starts in a full query (e.g. the chat template's assistant "
    "header); lets /reward take {'query': [...]} without 'prompts'.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from gramr2_jax.judge import Judge  # lazy: keeps `--help` fast and free of the model stack

    judge = Judge.from_pretrained(_MODEL.value)
    marker = _RESPONSE_MARKER.value
    server = server_lib.RewardServer(
        reward_fn=judge.reward,
        compare_fn=judge.compare_probs,
        host=_HOST.value,
        port=_PORT.value,
        max_batch_rows=_MAX_BATCH_ROWS.value,
        max_wait_ms=_MAX_WAIT_MS.value,
        max_body_bytes=_MAX_BODY_BYTES.value,
        max_rows_per_request=_MAX_ROWS_PER_REQUEST.value,
        split_query=server_lib.split_at_marker(marker) if marker else None,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    logging.info("Serving %s at %s", _MODEL.value, server.url)
    while not stop.wait(1.0):
        pass
    logging.info("Shutting down")
    server.stop()


if __name__ == "__main__":
    from gramr2_jax import hostmem

    hostmem.configure_process()  # re-executes once with glibc malloc tunables (CPU only)
    app.run(main)
