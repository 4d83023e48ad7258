"""A model server on this machine, seen from a client: a free port to start one on, and waiting
until it answers `GET /ping` with 200 (SageMaker's health check). One copy for the tests, the
benchmarks and scripts/invoke.py; standard library only, so any of them can import it."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
import urllib.request

PING_TIMEOUT_SECONDS = 2.0


class NotHealthy(RuntimeError):
    """The server did not answer /ping with 200 in time, or its process ended first."""


def free_port() -> int:
    """A TCP port no one listens on at 127.0.0.1 now (the OS's pick; free until someone binds)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_healthy(url: str, timeout: float = PING_TIMEOUT_SECONDS) -> bool:
    """Whether `GET {url}/ping` answers 200 now; no answer, a refused connection or another
    status is False."""
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=timeout) as response:
            return response.status == 200
    except (OSError, http.client.HTTPException):  # URLError, HTTPError, resets, timeouts
        return False


def wait_until_healthy(url: str, timeout: float, process: subprocess.Popen | None = None,
                       interval: float = 0.3) -> float:
    """Poll `{url}/ping` until it answers 200; the seconds it took. NotHealthy when `timeout`
    seconds pass first or `process` (the server, if the caller started it) exits: a server that
    died is reported at once with its exit code, not after the whole timeout."""
    started = time.monotonic()
    while not is_healthy(url):
        if process is not None and process.poll() is not None:
            raise NotHealthy(f"the server exited with {process.returncode} before {url}/ping "
                             f"answered 200")
        waited = time.monotonic() - started
        if waited > timeout:
            raise NotHealthy(f"{url}/ping did not answer 200 within {timeout:.0f} s")
        time.sleep(interval)
    return time.monotonic() - started
