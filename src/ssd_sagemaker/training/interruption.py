"""Stop requests: SageMaker stops a job (or a spot instance goes away) with SIGTERM and kills
it about 120 s later; a person stops a local run with Ctrl-C (SIGINT). Training notes the
request and stops at the next batch boundary, where a consistent checkpoint can be written;
a second Ctrl-C ends the process at once, without a checkpoint."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from ssd_sagemaker.errors import INTERRUPTED_EXIT_CODE, STOPPED_EXIT_CODE, JobStopped

LOG = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(JobStopped):
    """Training stopped on request at a batch boundary (not an error of the job's input);
    the exit code is the shell's for the signal: 143 for SIGTERM, 130 for SIGINT."""

    def __init__(self, epoch: int, batches_done: int, by: signal.Signals = signal.SIGTERM):
        super().__init__(f"training stopped by {by.name} in epoch {epoch} after {batches_done} "
                         f"batch(es); a checkpoint was saved: run `train` again to resume")
        self.epoch = epoch
        self.batches_done = batches_done
        self.exit_code = INTERRUPTED_EXIT_CODE if by == signal.SIGINT else STOPPED_EXIT_CODE


class StopRequest:
    """A flag set by SIGTERM or SIGINT (or by hand), polled by the training loop."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal = signal.SIGTERM

    def __call__(self) -> bool:
        return self._event.is_set()

    def set(self, by: signal.Signals = signal.SIGTERM) -> None:
        if not self._event.is_set():
            self.signal = by
        self._event.set()

    def install(self) -> StopRequest:
        """Route SIGTERM and SIGINT to this flag (main thread only, as Python requires)."""
        def on_signal(signum, frame):
            by = signal.Signals(signum)
            if by == signal.SIGINT:
                # The next Ctrl-C is the kernel's: it ends the process even inside a long
                # native call, where no Python handler could run.
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                LOG.warning("SIGINT received: stopping at the next batch boundary to "
                            "checkpoint (Ctrl-C again to stop at once, without a checkpoint)")
            else:
                LOG.warning("%s received: stopping at the next batch boundary to checkpoint",
                            by.name)
            self.set(by)

        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                signal.signal(signum, on_signal)
        return self


def stop_signal(should_stop: Callable[[], bool] | None) -> signal.Signals:
    """The signal that asked for the stop (SIGTERM unless a StopRequest knows better)."""
    return should_stop.signal if isinstance(should_stop, StopRequest) else signal.SIGTERM
