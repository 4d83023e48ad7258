"""A bound on the wall time of a block run in the test's own process, for code that used to
hang (an `open()` of a FIFO blocks until a writer comes): past the bound the block is
interrupted by SIGALRM and the test fails with TimeoutError instead of hanging the run."""

import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s (blocked in open()?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
