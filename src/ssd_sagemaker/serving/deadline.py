"""The time one request may take, from the worker's accept to its answer: a total, below
gunicorn's worker timeout (`SAGEMAKER_MODEL_SERVER_TIMEOUT`) by the time the answer and the
close need, so that a request always gets an HTTP answer and no client holds a worker longer.

The worker starts a `RequestClock` at accept; its socket reads stop at the clock's deadline
(408, `worker.py`), and the app runs the work (decode, forward, render) in a thread it waits
for until the same deadline (503 after it). A thread, not SIGALRM: a signal handler runs only
between Python bytecodes, so it cannot stop a 45 s libjpeg call nor a forward, while waiting on
a thread returns on time (simplejpeg, OpenCV and MXNet release the GIL). The abandoned thread
cannot be stopped, so the worker that ran it exits once it has answered and gunicorn starts a
replacement (`ServingWorker.handle`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ssd_sagemaker.serving.request_errors import RequestError

T = TypeVar("T")

# What gunicorn's timeout must still hold after the deadline: writing the answer (a rendered
# image can be megabytes), gunicorn's graceful close (it drains the client for up to 2 s) and
# the arbiter's once-a-second check. A fifth of the timeout when that is more.
ANSWER_SECONDS = 1.0
GRACEFUL_CLOSE_SECONDS = 2.0
ARBITER_CHECK_SECONDS = 1.0
MARGIN_SECONDS = ANSWER_SECONDS + GRACEFUL_CLOSE_SECONDS + ARBITER_CHECK_SECONDS
# The key under which the worker hands the request's clock to the app in the WSGI environ.
ENVIRON_KEY = "ssd_sagemaker.request_clock"


def request_seconds(timeout: float) -> float:
    """The deadline of a request under gunicorn timeout `timeout`: 48 s of the default 60, 6 s
    of 10; never under half the timeout (below 8 s the margin is thinner than MARGIN_SECONDS)."""
    return max(timeout - max(MARGIN_SECONDS, timeout / 5), timeout / 2)


class WorkTimedOut(RequestError):
    """The request arrived, but decoding and detection did not finish by its deadline (503)."""

    status = 503


@dataclass
class RequestClock:
    """One request's deadline (`time.monotonic()`), and whether work was left running past it."""

    seconds: float
    deadline: float = field(init=False)
    abandoned: bool = False

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.seconds

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def run_before_deadline(clock: RequestClock | None, work: Callable[[], T]) -> T:
    """`work()`'s result or exception, or WorkTimedOut once `clock`'s deadline passes (the
    clock is then marked abandoned: the thread still runs). Without a clock (not under the
    server's worker: tests, `predict`), `work()` runs here."""
    if clock is None:
        return work()
    outcome: list = []

    def run() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread as is
            outcome.append((False, error))

    thread = threading.Thread(target=run, name="request-work", daemon=True)
    thread.start()
    thread.join(max(0.0, clock.remaining()))
    if not outcome:
        clock.abandoned = True
        raise WorkTimedOut(f"the image was not processed in time: decoding and detection had "
                           f"not finished when the request's {clock.seconds:g} s ran out (the "
                           f"deadline follows SAGEMAKER_MODEL_SERVER_TIMEOUT); retry, or send a "
                           f"smaller image")
    succeeded, value = outcome[0]
    if succeeded:
        return value
    raise value
