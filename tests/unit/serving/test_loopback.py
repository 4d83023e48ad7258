"""loopback.py: the one free-port and wait-for-/ping helper of the tests, benchmarks and scripts,
against a real HTTP server on a socket: a 503 is waited through, a dead server is reported at
once with its exit code, silence until the deadline is reported naming the URL."""

import http.server
import socket
import subprocess
import sys
import threading
import time

import pytest

from ssd_sagemaker.serving.loopback import NotHealthy, free_port, wait_until_healthy


@pytest.fixture
def booting_server():
    """/ping answers 503 to its first three requests (a model still loading), then 200."""
    pings = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            pings.append(self.path)
            self.send_response(200 if len(pings) > 3 and self.path == "/ping" else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", pings
    finally:
        server.shutdown()
        server.server_close()


def test_a_free_port_can_be_bound():
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_waits_through_unhealthy_answers_until_ping_is_200(booting_server):
    url, pings = booting_server
    waited = wait_until_healthy(url, timeout=30, interval=0.05)
    assert pings == ["/ping"] * 4
    assert 0.1 <= waited < 30


def test_a_server_that_exits_is_reported_at_once_with_its_code():
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    started = time.monotonic()
    with pytest.raises(NotHealthy, match="exited with 3"):
        wait_until_healthy(f"http://127.0.0.1:{free_port()}", timeout=60, process=process)
    assert time.monotonic() - started < 20


def test_silence_until_the_deadline_names_the_url():
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(NotHealthy, match=f"{url}/ping did not answer 200 within 1 s"):
        wait_until_healthy(url, timeout=1, interval=0.1)
    assert 1 <= time.monotonic() - started < 10
