"""A control channel between the hosts of a job, beside the parameter server: `hosts[0]`
shares its early-stopping decision each epoch, and any host's failure (or disappearance) is
relayed to all others — a dist_sync worker otherwise waits forever for a peer's gradients.

JSON lines over TCP: every host (the master too) connects to the coordinator on the master;
messages: hello, share {key, value}, done, failed {reason}; the coordinator relays shared
values and turns a failure or a connection lost before `done` into `abort` for everyone."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable

LOG = logging.getLogger(__name__)


def _send(stream, message: dict) -> None:
    stream.write((json.dumps(message) + "\n").encode())
    stream.flush()


class Coordinator:
    """Runs on the master host: relays decisions and aborts between connected hosts. Listens
    on the scheduler's address only (the one the hosts connect to), not on every interface."""

    def __init__(self, address: str, port: int, expected_hosts: int):
        self._server = socket.create_server((address, port), reuse_port=False)
        self._expected = expected_hosts
        self._streams: list = []
        self._lock = threading.Lock()
        self._aborted = False
        self._finished_hosts: set[str] = set()
        self._joined_hosts: set[str] = set()
        self._all_finished = threading.Condition(self._lock)
        threading.Thread(target=self._accept, name="coordinator", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            stream = connection.makefile("rwb")
            with self._lock:
                self._streams.append(stream)
            threading.Thread(target=self._serve, args=(stream,), daemon=True).start()

    def _broadcast(self, message: dict) -> None:
        with self._lock:
            for stream in list(self._streams):
                try:
                    _send(stream, message)
                except OSError:
                    self._streams.remove(stream)

    def _abort(self, host: str, reason: str) -> None:
        if not self._aborted:
            self._aborted = True
            LOG.error("host %s failed (%s): aborting the job on every host", host, reason)
            self._broadcast({"type": "abort", "host": host, "reason": reason})

    def _serve(self, stream) -> None:
        host, done = "unknown host", False
        for line in stream:
            message = json.loads(line)
            kind = message.get("type")
            if kind == "hello":
                host = message["host"]
                with self._lock:
                    self._joined_hosts.add(host)
                    everyone = len(self._joined_hosts) == self._expected
                if everyone:  # only now may workers create the kvstore (it waits for all)
                    self._broadcast({"type": "share", "key": "all_joined", "value": True})
            elif kind == "share":
                self._broadcast(message)
            elif kind == "done":
                done = True
            elif kind == "failed":
                done = True
                self._abort(host, message.get("reason", "unknown"))
            if done:
                with self._lock:
                    self._finished_hosts.add(host)
                    self._all_finished.notify_all()
        if not done:
            self._abort(host, "lost contact with it before it finished")
            with self._lock:
                self._finished_hosts.add(host)
                self._all_finished.notify_all()

    def wait_until_all_finished(self, timeout: float) -> bool:
        """True once every host has reported done or failed (or was lost)."""
        with self._lock:
            return self._all_finished.wait_for(
                lambda: len(self._finished_hosts) >= self._expected, timeout=timeout)

    def close(self) -> None:
        self._server.close()


class Peer:
    """One host's end of the channel (the master has one too)."""

    def __init__(self, host: str, address: str, port: int, timeout: float,
                 on_abort: Callable[[str, str], None], coordinator_host: str = "the master"):
        self._host = host
        self._coordinator_host = coordinator_host
        self._on_abort = on_abort
        self._values: dict[str, object] = {}
        self._condition = threading.Condition()
        self._finished = False
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._socket = socket.create_connection((address, port), timeout=10)
                break
            except OSError as error:
                if time.monotonic() >= deadline:
                    raise ConnectionError(f"cannot reach the job coordinator at {address}:{port} "
                                          f"within {timeout:.0f} s: {error}") from None
                time.sleep(1.0)
        self._socket.settimeout(None)
        self._stream = self._socket.makefile("rwb")
        _send(self._stream, {"type": "hello", "host": host})
        threading.Thread(target=self._listen, name="coordination", daemon=True).start()

    def _listen(self) -> None:
        for line in self._stream:
            message = json.loads(line)
            if message["type"] == "share":
                with self._condition:
                    self._values[message["key"]] = message["value"]
                    self._condition.notify_all()
            elif message["type"] == "abort" and not self._finished:
                self._on_abort(message["host"], message["reason"])
        if not self._finished:
            self._on_abort(self._coordinator_host,
                           "lost contact with it (the job coordinator) before training finished")

    def share(self, key: str, value: object) -> object:
        """Master: announce a value every host must agree on (e.g. an epoch's stop decision)."""
        _send(self._stream, {"type": "share", "key": key, "value": value})
        return value

    def wait_for(self, key: str, timeout: float | None = None) -> object:
        """The master's value for `key`, blocking until it arrives (TimeoutError after
        `timeout` seconds when given)."""
        with self._condition:
            if not self._condition.wait_for(lambda: key in self._values, timeout=timeout):
                raise TimeoutError(key)
            return self._values[key]

    def report_done(self) -> None:
        self._finished = True
        _send(self._stream, {"type": "done"})

    def report_failure(self, reason: str) -> None:
        """Tell the others; this host ends by its own error path, not by the relayed abort."""
        self._finished = True
        try:
            _send(self._stream, {"type": "failed", "reason": reason[:500]})
        except OSError:
            pass

    def close(self) -> None:
        self._finished = True
        self._socket.close()
