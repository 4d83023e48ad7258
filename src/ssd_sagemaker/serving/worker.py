"""The gunicorn worker of the model server: gunicorn's sync worker with two changes.

- Once told to stop, it also answers the connections already queued on the listening socket
  (which would be reset when the last worker closes it), within the graceful timeout.
- A request gunicorn cannot parse (bad request line, headers or framing, limits exceeded) is
  answered with the documented JSON error body and gunicorn's status for it, instead of
  gunicorn's HTML page; a failure of ours there is a JSON 500 with the traceback in the log.
- A client that stops sending in the middle of its request (or sends nothing) gets a JSON 408
  after `client_idle_seconds`, instead of holding the worker until gunicorn's timeout kills it;
  one that keeps sending slowly (a byte every few seconds) gets it at the request's deadline
  (`deadline.py`: a total from accept, below gunicorn's timeout), and so does one whose answer
  the app could not compute in time (503). No request is answered by a closed connection.
- A worker whose request left work running past the deadline exits after answering (its thread
  cannot be stopped); gunicorn starts a replacement.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from gunicorn import util
from gunicorn.http.message import Request
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers.sync import SyncWorker

from ssd_sagemaker.serving.deadline import (
    ANSWER_SECONDS,
    ENVIRON_KEY,
    RequestClock,
    request_seconds,
)
from ssd_sagemaker.serving.protocol_errors import (
    ClientIdle,
    ClientTooSlow,
    error_response,
    protocol_refusal,
)
from ssd_sagemaker.serving.request_errors import RequestError

# The longest pause allowed between two reads of one request. Below gunicorn's timeout (half of
# it when that is shorter), so the client is told before its worker would be killed.
CLIENT_IDLE_SECONDS = 10.0


class BoundedSocket:
    """A client socket whose reads of the request wait at most `idle_seconds` for the next
    bytes (then ClientIdle) and end at the request's deadline (then ClientTooSlow): not
    OSErrors, so gunicorn's handler and the app refuse them, 408. Writes of the answer get until
    ANSWER_SECONDS after the deadline. Once the answer is sent (`shutdown`), reads are the
    socket's own again: gunicorn's graceful close drains the connection with its own timeout."""

    def __init__(self, connection: socket.socket, idle_seconds: float, clock: RequestClock):
        self._connection = connection
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._answered = False

    def recv(self, *args):
        if self._answered:
            return self._connection.recv(*args)
        remaining = self._clock.remaining()
        if remaining <= 0:
            raise ClientTooSlow(self._clock.seconds)
        self._connection.settimeout(min(self._idle_seconds, remaining))
        try:
            return self._connection.recv(*args)
        except TimeoutError:
            if self._clock.remaining() <= 0:
                raise ClientTooSlow(self._clock.seconds) from None
            raise ClientIdle(self._idle_seconds) from None

    def sendall(self, data) -> None:
        self._connection.settimeout(max(0.01, self._clock.remaining() + ANSWER_SECONDS))
        self._connection.sendall(data)

    def shutdown(self, how: int) -> None:
        self._answered = True
        self._connection.shutdown(how)

    def __getattr__(self, name: str):
        return getattr(self._connection, name)


class ServingWorker(SyncWorker):
    """gunicorn's sync worker that drains its queue on stop and refuses in JSON."""

    def run(self) -> None:
        super().run()
        if not self.is_parent_alive():
            return
        deadline = time.monotonic() + self.cfg.graceful_timeout - 1
        for listener in self.sockets:
            listener.setblocking(False)
            while time.monotonic() < deadline:
                self.notify()
                try:
                    self.accept(listener)  # answers the request before returning
                except OSError as error:
                    if error.errno != errno.ECONNABORTED:  # EAGAIN: nothing is waiting
                        break

    def client_idle_seconds(self) -> float:
        return min(CLIENT_IDLE_SECONDS, self.cfg.timeout / 2)

    def load_wsgi(self) -> None:
        """The app, given each request's clock in its environ (`deadline.ENVIRON_KEY`)."""
        super().load_wsgi()
        app: Callable[..., Any] = self.wsgi  # type: ignore[has-type]  # gunicorn is untyped

        def with_clock(environ, start_response):
            environ[ENVIRON_KEY] = self._clock
            return app(environ, start_response)

        self.wsgi = with_clock

    def handle(self, listener, client: socket.socket, addr) -> None:
        self._clock = RequestClock(request_seconds(self.cfg.timeout))
        super().handle(listener, BoundedSocket(client, self.client_idle_seconds(), self._clock),
                       addr)
        if self._clock.abandoned:
            # The thread still runs the abandoned work (a decode or forward cannot be
            # interrupted) and would slow every later request: exit now, answered and closed.
            self.log.warning("worker %d exits: a request's work outlived its %g s deadline; "
                             "gunicorn starts a replacement", os.getpid(), self._clock.seconds)
            sys.stderr.flush()
            os._exit(0)

    def handle_error(self, req, client: socket.socket, addr, exc: BaseException) -> None:
        """Answer what gunicorn's own `handle_error` answers (same statuses), as JSON."""
        addr = addr or ("", -1)  # a unix socket has no address
        refusal = protocol_refusal(exc)
        if refusal is None:
            self.log.exception("error handling request %s %s", getattr(req, "method", ""),
                               getattr(req, "uri", "(no URI read)"))
            refusal = RequestError(f"internal error ({type(exc).__name__}); see the server log",
                                   500)
        else:
            self.log.warning("refused a request from %s with %d: %s", addr[0], refusal.status,
                             exc)
        parsed = getattr(exc, "req", None)  # a header error carries the request parsed so far
        req = req or (parsed if isinstance(parsed, Request) else None)
        response = error_response(refusal, head=getattr(req, "method", None) == "HEAD")
        if req is not None:  # the access log line gunicorn writes for a request it refuses
            environ = default_environ(req, client, self.cfg)
            environ.update(REMOTE_ADDR=addr[0], REMOTE_PORT=str(addr[1]))
            logged = Response(req, client, self.cfg)
            logged.status = f"{refusal.status} {refusal.reason}"
            logged.response_length = len(response)
            self.log.access(logged, req, environ, timedelta(0))
        try:
            util.write_nonblock(client, response)
        except OSError:
            self.log.debug("could not send the %d refusal: the client has gone", refusal.status)
