"""SIGTERM handling: SageMaker stops a job (or a spot instance goes away) with SIGTERM and
kills it about 120 s later. Training notes the request and stops at the next batch boundary,
where a consistent checkpoint can be written."""

from __future__ import annotations

import logging
import signal
import threading

from ssd_sagemaker.errors import JobStopped

LOG = logging.getLogger(__name__)


class TrainingInterrupted(JobStopped):
    """Training stopped on request at a batch boundary (not an error of the job's input)."""

    def __init__(self, epoch: int, batches_done: int):
        super().__init__(f"training stopped by SIGTERM in epoch {epoch} after {batches_done} "
                         f"batch(es); a checkpoint was saved: run `train` again to resume")
        self.epoch = epoch
        self.batches_done = batches_done


class StopRequest:
    """A flag set by SIGTERM (or by hand), polled by the training loop."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def __call__(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    def install(self) -> "StopRequest":
        """Route SIGTERM to this flag (main thread only, as Python requires)."""
        def on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
            LOG.warning("SIGTERM received: stopping at the next batch boundary to checkpoint")
            self.set()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_sigterm)
        return self
