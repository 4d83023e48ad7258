"""Clients that stall in the middle of a request, against a real `serve` (gunicorn, one
worker): each gets the documented JSON 408 after the idle limit (half of gunicorn's timeout
here), long before gunicorn's timeout would kill the worker; the same worker then answers the
next request, and nothing in the log is a traceback or a 500."""

from __future__ import annotations

import socket
import time

import cv2
import numpy as np
import pytest

from http_answers import POST_HEAD, Answer, assert_refused, parse_answer
from serve_process import Server
from tiny_model import export_tiny_model

pytestmark = pytest.mark.slow

JPEG = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
TIMEOUT = 8  # SAGEMAKER_MODEL_SERVER_TIMEOUT: the idle limit is half of it
IDLE = TIMEOUT / 2


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("opt_ml")
    export_tiny_model(base / "model")
    server = Server(base, SAGEMAKER_MODEL_SERVER_WORKERS="1",
                    SAGEMAKER_MODEL_SERVER_TIMEOUT=str(TIMEOUT))
    try:
        server.wait_ready()
        server.first_workers = server.workers()
        yield server
    finally:
        assert server.stop() == 0, server.output()[-3000:]


def stalled_exchange(server: Server, sent: bytes) -> tuple[Answer | None, float]:
    """Send `sent` and then nothing, keeping the connection open: the answer and how long it
    took to come."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=3 * TIMEOUT) as connection:
        connection.sendall(sent)
        started = time.monotonic()
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        waited = time.monotonic() - started
    return parse_answer(received), waited


@pytest.mark.parametrize("sent", [
    b"",  # connects and sends nothing
    b"POST /invocations HTTP/1.1\r\nHost: x\r\n",  # headers never finished
    POST_HEAD + b"Content-Length: %d\r\n\r\n" % len(JPEG) + JPEG[:100],  # body stops short
    POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n10\r\nabc",  # a chunk stops short
], ids=["nothing", "half-headers", "half-body", "half-chunk"])
def test_a_stalled_client_gets_a_json_408_after_the_idle_limit(server, sent):
    answer, waited = stalled_exchange(server, sent)
    assert_refused(answer, 408, "not received in time", f"nothing arrived for {IDLE:g} s")
    assert IDLE - 0.5 <= waited < TIMEOUT, waited  # told before gunicorn would kill the worker


def test_the_same_worker_answers_after_the_stalled_clients(server):
    """Runs last: the worker was never killed or replaced, nothing was a 500 or a traceback."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(POST_HEAD + b"Content-Length: %d\r\n\r\n" % len(JPEG) + JPEG)
        assert connection.recv(12) == b"HTTP/1.1 200"
    assert server.workers() == server.first_workers
    output = server.output()
    assert '" 500 ' not in output and "Traceback" not in output, output[-3000:]
    assert "WORKER TIMEOUT" not in output, output[-3000:]
