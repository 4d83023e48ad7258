"""Clients that stall, drip or ask for too much work, against a real `serve` (gunicorn, two
workers, SAGEMAKER_MODEL_SERVER_TIMEOUT=10 s: an idle limit of 5 s per pause, a deadline of 6 s
per request). A stalled client gets the documented JSON 408 after the idle limit; clients that
drip a header byte every 4 s (never idle that long) get it at the deadline, so they hold the
workers 6 s, not until gunicorn kills them, and a valid request sent meanwhile is answered
within the deadline plus its own time; a request whose decode outlives the deadline gets a JSON
503 at the deadline (before: no answer, the connection closed when gunicorn killed the worker).
No "WORKER TIMEOUT", 500 or traceback in any log."""

from __future__ import annotations

import concurrent.futures
import os
import socket
import time

import cv2
import numpy as np
import pytest

from cli_runner import SRC
from http_answers import POST_HEAD, Answer, assert_refused, parse_answer
from progressive_jpeg import progressive_jpeg
from serve_process import Server
from tiny_model import export_tiny_model

pytestmark = pytest.mark.slow

JPEG = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
TIMEOUT = 10  # SAGEMAKER_MODEL_SERVER_TIMEOUT
IDLE = 5  # half of it
DEADLINE = 6  # deadline.request_seconds(10): 10 less the 4 s to answer and close
DRIP_SECONDS = 4
WORKERS = 2


def _start(base, **env) -> Server:
    export_tiny_model(base / "model")
    server = Server(base, SAGEMAKER_MODEL_SERVER_TIMEOUT=str(TIMEOUT), **env)
    server.wait_ready()
    server.first_workers = server.workers()
    return server


def _assert_clean_log(server: Server) -> None:
    output = server.output()
    assert '" 500 ' not in output and "Traceback" not in output, output[-3000:]
    assert "WORKER TIMEOUT" not in output, output[-3000:]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = _start(tmp_path_factory.mktemp("opt_ml"), SAGEMAKER_MODEL_SERVER_WORKERS=str(WORKERS))
    try:
        yield server
    finally:
        assert server.stop() == 0, server.output()[-3000:]


def exchange(server: Server, sent: bytes) -> tuple[Answer | None, float]:
    """Send `sent` and then nothing, keeping the connection open until the server closes it:
    the answer and how long it took to come."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=3 * TIMEOUT) as connection:
        connection.sendall(sent)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return parse_answer(received), time.monotonic() - started


def posted(body: bytes) -> bytes:
    """A whole `POST /invocations` of `body`."""
    return POST_HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body


def drip_exchange(server: Server) -> tuple[Answer | None, float]:
    """A request line, then one header byte every DRIP_SECONDS until the server answers: the
    answer and how long after connecting it came."""
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        started = time.monotonic()
        connection.sendall(POST_HEAD)
        connection.settimeout(DRIP_SECONDS)
        received = b""
        while time.monotonic() - started < 3 * TIMEOUT:
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                connection.sendall(b"a")  # one more byte of a header name
                continue
            if not chunk:
                break
            received += chunk
        return parse_answer(received), time.monotonic() - started


def valid_exchange(server: Server) -> tuple[Answer | None, float]:
    return exchange(server, posted(JPEG))


@pytest.mark.parametrize("sent", [
    b"",  # connects and sends nothing
    b"POST /invocations HTTP/1.1\r\nHost: x\r\n",  # headers never finished
    POST_HEAD + b"Content-Length: %d\r\n\r\n" % len(JPEG) + JPEG[:100],  # body stops short
    POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n10\r\nabc",  # a chunk stops short
], ids=["nothing", "half-headers", "half-body", "half-chunk"])
def test_a_stalled_client_gets_a_json_408_after_the_idle_limit(server, sent):
    answer, waited = exchange(server, sent)
    assert_refused(answer, 408, "not received in time", f"nothing arrived for {IDLE:g} s")
    assert IDLE - 0.5 <= waited < DEADLINE, waited  # told before gunicorn would kill the worker


def test_drip_clients_get_a_json_408_at_the_deadline_and_a_valid_request_gets_through(server):
    """Before: the two drip clients held both workers until WORKER TIMEOUT (60 s), got a 500
    after 68 s, and delayed a valid request by 63.4 s."""
    own_answer, own_time = valid_exchange(server)
    assert own_answer is not None and own_answer.status == 200, own_answer
    with concurrent.futures.ThreadPoolExecutor(WORKERS + 1) as pool:
        drips = [pool.submit(drip_exchange, server) for _ in range(WORKERS)]
        time.sleep(1)  # both workers have taken a drip client
        valid = pool.submit(valid_exchange, server)
        answer, waited = valid.result()
        dripped = [drip.result() for drip in drips]
    assert answer is not None and answer.status == 200, answer
    assert waited <= DEADLINE - 1 + own_time + 1.5, (waited, own_time)  # sent 1 s in
    for drip_answer, drip_time in dripped:
        assert_refused(drip_answer, 408, "not received in time",
                       f"it had not all arrived after {DEADLINE:g} s")
        assert DEADLINE - 0.5 <= drip_time < TIMEOUT, drip_time
        assert drip_answer.extra == b""


def test_the_same_workers_answer_after_the_slow_clients(server):
    """Runs last: no worker was killed or replaced, nothing was a 500 or a traceback."""
    answer, _ = valid_exchange(server)
    assert answer is not None and answer.status == 200
    assert server.workers() == server.first_workers
    _assert_clean_log(server)


@pytest.fixture(scope="module")
def unlimited_scans_server(tmp_path_factory):
    """One worker whose scan limit a test-only `sitecustomize` lifts, so a decode can outlive
    the deadline (with the limit, the hostile JPEG is a 400 before decoding)."""
    base = tmp_path_factory.mktemp("opt_ml_scans")
    hook = base / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import ssd_sagemaker.data.checks.images as images\nimages.MAX_JPEG_SCANS = 1_000_000\n")
    server = _start(base, SAGEMAKER_MODEL_SERVER_WORKERS="1",
                    PYTHONPATH=os.pathsep.join([str(hook), str(SRC)]))
    try:
        yield server
    finally:
        assert server.stop() == 0, server.output()[-3000:]


def test_a_decode_past_the_deadline_gets_a_json_503_and_the_worker_is_replaced(
        unlimited_scans_server):
    """6000 x 6000, 2,600 valid scans (398 kB): 21 s of libjpeg-turbo in one call on a quiet
    2-core machine here (4000 x 4000 with 2,090 scans took 6.5-7.3 s, too close to the 6 s
    deadline: a faster CPU answered it in time), so the worker would be killed at the 10 s
    timeout and the client get a closed connection."""
    server = unlimited_scans_server
    answer, waited = exchange(server, posted(progressive_jpeg(6000, 6000, 2600)))
    assert_refused(answer, 503, "not processed in time", f"request's {DEADLINE:g} s ran out")
    assert DEADLINE - 0.5 <= waited < TIMEOUT, waited
    valid, _ = valid_exchange(server)  # the replacement worker answers
    assert valid is not None and valid.status == 200
    assert server.workers() != server.first_workers
    output = server.output()
    assert "a request's work outlived its 6 s deadline; gunicorn starts a replacement" in output
    _assert_clean_log(server)
