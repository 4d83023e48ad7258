"""The progress watchdog: a pass whose batches stop coming ends with TrainingStalled naming
the wait (even inside a blocking read), a pass that keeps beating does not; the limit comes
from SSD_PROGRESS_TIMEOUT, doubled in Pipe mode, and a bad value is a ClientError."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ssd_sagemaker.environment import read_training_settings
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.training.watchdog import TrainingStalled, Watchdog, progress_timeout


def test_a_blocking_read_is_broken_and_the_wait_named(tmp_path):
    fifo = tmp_path / "train_1"
    os.mkfifo(fifo)
    keep_open = os.open(fifo, os.O_RDWR)  # a writer that never writes
    started = time.monotonic()
    try:
        with pytest.raises(TrainingStalled) as stalled:
            with Watchdog(0.5).watching("training epoch 3") as beat:
                beat()
                waiting_for = "the next records of the FIFO"  # noqa: F841
                with open(fifo, "rb") as stream:
                    stream.read(1)
    finally:
        os.close(keep_open)
    assert time.monotonic() - started < 5
    message = str(stalled.value)
    assert message.startswith("No batch completed for 0.5 s in training epoch 3 (after 1 "
                              "batch(es) of it): the job was waiting for the next records "
                              "of the FIFO")
    assert "SSD_PROGRESS_TIMEOUT allows 0.5 s, raise it" in message
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # disarmed after the pass
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)


def test_beats_keep_a_slow_but_moving_pass_alive():
    with Watchdog(0.4).watching("validation") as beat:
        for _ in range(6):
            time.sleep(0.2)
            beat()
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_limit_from_the_environment():
    assert progress_timeout(False, read_training_settings({})) == 1800
    assert progress_timeout(True, read_training_settings({})) == 3600
    assert progress_timeout(True, read_training_settings({"SSD_PROGRESS_TIMEOUT": "1.5"})) == 3.0
    for bad in ("0", "-3", "soon", "inf", "nan"):
        with pytest.raises(ClientError, match=f"SSD_PROGRESS_TIMEOUT='{bad}' is not a number"):
            read_training_settings({"SSD_PROGRESS_TIMEOUT": bad})


def test_a_wait_no_python_handler_can_break_ends_the_process_at_twice_the_limit():
    # SIGALRM blocked stands for a main thread stuck inside native code.
    script = ("import signal, time\n"
              "from ssd_sagemaker.training.watchdog import Watchdog\n"
              "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\n"
              "with Watchdog(0.5).watching('training epoch 0'):\n"
              "    time.sleep(30)\n")
    started = time.monotonic()
    ended = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=60)
    assert ended.returncode == 1
    assert 1.0 <= time.monotonic() - started < 10
    assert ended.stderr.startswith("Timeout (0:00:01)!")
    assert 'File "<string>", line 5 in <module>' in ended.stderr  # where it was stuck
