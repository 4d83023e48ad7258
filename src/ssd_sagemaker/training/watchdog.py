"""The progress watchdog: when no batch completes for a long time (a Pipe-mode stream that
stopped flowing, a wedged loader worker, a stuck step), the job stops with an AlgorithmError
saying what it was waiting for, instead of hanging, and billing, until the job's
`MaxRuntimeInSeconds`.

A real-time timer (SIGALRM) is re-armed after every finished batch of a pass; its handler
raises in the main thread, which also breaks a blocking read. The wait is named by the
innermost frame holding a local `waiting_for` (the loader sets one before it blocks). A wait
inside native code, where no Python handler can run, is ended by `faulthandler` at twice the
limit: all threads' stacks on stderr, exit status 1.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from ssd_sagemaker.environment import TrainingSettings
from ssd_sagemaker.errors import AlgorithmError
from ssd_sagemaker.variables import SSD_PROGRESS_TIMEOUT

LOG = logging.getLogger(__name__)

# A Pipe-mode channel's next pass can be slow to start: SageMaker opens the FIFO `<channel>_n`
# only after the previous pass is read, then streams it from S3.
PIPE_MODE_FACTOR = 2.0
PACKAGE_DIR = Path(__file__).resolve().parents[1]
STDERR = 2  # a descriptor: under a test runner sys.stderr may have none


class TrainingStalled(AlgorithmError):
    """No batch completed within the progress timeout."""


def progress_timeout(pipe_mode: bool, settings: TrainingSettings) -> float:
    """Seconds without a finished batch before the job stops: `SSD_PROGRESS_TIMEOUT`
    (default 1800) from the job's settings, read at start, doubled when the training data
    comes in Pipe mode."""
    return settings.progress_timeout * (PIPE_MODE_FACTOR if pipe_mode else 1.0)


def _where(frame: FrameType) -> str:
    return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} in {frame.f_code.co_name}"


def waiting_for(frame: FrameType | None) -> str:
    """What the main thread was blocked on: the innermost `waiting_for` local of the stack,
    and the innermost place in this project's code."""
    what, place = None, None
    while frame is not None:
        if place is None and Path(frame.f_code.co_filename).resolve().is_relative_to(
                PACKAGE_DIR):
            place = _where(frame)
        if what is None and isinstance(frame.f_locals.get("waiting_for"), str):
            what = frame.f_locals["waiting_for"]
        frame = frame.f_back
    what = what or "the current training step to finish"
    return f"{what} (at {place})" if place else what


class Watchdog:
    """Stops a pass of batches that stopped progressing (see the module docstring)."""

    def __init__(self, seconds: float, pipe_mode: bool = False):
        self.seconds = seconds
        self._limit = (f"{SSD_PROGRESS_TIMEOUT} allows {seconds:g} s"
                       + (" (doubled in Pipe mode)" if pipe_mode else ""))
        self._what = ""
        self._batches = 0

    @contextlib.contextmanager
    def watching(self, what: str) -> Iterator[Callable[[], None]]:
        """Watch one pass (`what`: "training epoch 3"); call the yielded function after each
        finished batch. Outside the main thread (where signals cannot go) it does nothing."""
        if threading.current_thread() is not threading.main_thread():
            yield lambda: None
            return
        self._what, self._batches = what, 0
        previous = signal.signal(signal.SIGALRM, self._expired)
        self._arm()
        try:
            yield self._beat
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            faulthandler.cancel_dump_traceback_later()
            signal.signal(signal.SIGALRM, previous)

    def _arm(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        faulthandler.dump_traceback_later(2 * self.seconds, exit=True, file=STDERR)

    def _beat(self) -> None:
        self._batches += 1
        self._arm()

    def _expired(self, signum: int, frame: FrameType | None) -> None:
        raise TrainingStalled(
            f"No batch completed for {self.seconds:g} s in {self._what} (after "
            f"{self._batches} batch(es) of it): the job was waiting for "
            f"{waiting_for(frame)}. Check that the data keeps arriving (in Pipe mode SageMaker "
            f"streams each pass of a channel through a FIFO) and that the instance is not "
            f"out of memory; {self._limit}, raise it if batches are legitimately this slow.")


@contextlib.contextmanager
def start_up_watch(pipe_mode: bool, settings: TrainingSettings) -> Iterator[None]:
    """Around reading the training data: in Pipe mode under the watchdog, since the first
    samples are read then and a FIFO that never opens or stays silent would hang the job."""
    if not pipe_mode:
        yield
        return
    watchdog = Watchdog(progress_timeout(True, settings), pipe_mode=True)
    with watchdog.watching("start-up, reading the first samples of the Pipe-mode channels"):
        yield
