"""The loader's worker pool under faults, with real processes and signals: a SIGKILLed worker
is noticed at once, replaced, and its tasks redone; one death too many is a WorkerLost naming
the pid, the signal and the likely cause; SIGTERM/SIGINT to the process group do not touch the
workers; closing is prompt whatever state the workers are in."""

from __future__ import annotations

import os
import signal
import time

import pytest

from ssd_sagemaker.data.loading import worker_pool
from ssd_sagemaker.data.loading.worker_pool import WorkerLost, WorkerPool


@pytest.mark.slow  # builds a full network, starts a process or collects the suite
def test_a_killed_worker_is_replaced_and_its_task_redone():
    pool = WorkerPool(1)
    try:
        assert pool.submit(pow, 2, 5).get(timeout=60) == 32  # started and working
        victim = pool.pids[0]
        slow = pool.submit(time.sleep, 30)
        after = pool.submit(pow, 3, 3)
        time.sleep(0.5)  # the worker is inside the 30 s task
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        with pytest.raises(TimeoutError):
            slow.get(timeout=2)  # redone from the start by the replacement
        assert time.monotonic() - killed < 5
        assert pool.restarts == 1 and pool.pids[0] != victim
        os.kill(pool.pids[0], signal.SIGKILL)  # and the replacement dies in turn
        assert after.get(timeout=60) == 27
        assert pool.restarts == 2
    finally:
        pool.close()


def test_one_death_too_many_names_pid_signal_and_cause(monkeypatch):
    monkeypatch.setattr(worker_pool, "MAX_WORKER_RESTARTS", 0)
    pool = WorkerPool(1)
    task = pool.submit(time.sleep, 30)
    victim = pool.pids[0]
    time.sleep(0.5)
    os.kill(victim, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(WorkerLost) as lost:
        task.get()
    assert time.monotonic() - started < 5
    assert str(lost.value).startswith(
        f"Data-loader worker process {victim} was killed by SIGKILL while making 1 batch(es) "
        f"(0 dead worker(s) already replaced in this job). SIGKILL is most often the kernel's "
        f"out-of-memory killer")
    assert "lower mini_batch_size or image_shape" in str(lost.value)
    assert not pool.running
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)


def test_group_signals_leave_workers_alone_and_close_is_prompt():
    pool = WorkerPool(2)
    try:
        assert [pool.submit(pow, 2, n).get(timeout=60) for n in range(4)] == [1, 2, 4, 8]
        busy = pool.submit(time.sleep, 60)
        for signum in (signal.SIGTERM, signal.SIGINT):
            for pid in pool.pids:
                os.kill(pid, signum)
        time.sleep(0.5)
        assert pool.submit(pow, 2, 10).get(timeout=30) == 1024
        assert pool.restarts == 0 and not busy.ready()
        pids = pool.pids
    finally:
        started = time.monotonic()
        pool.close()
    assert time.monotonic() - started < 5
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_group_signal_while_workers_start_leaves_them_alone():
    """The window before a new worker ignores the group's signals (it is still importing):
    a SIGTERM or Ctrl-C to the group then must not kill it either."""
    pool = WorkerPool(2)
    try:
        for pid in pool.pids:  # at once: the workers are still starting
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGINT)
        assert [pool.submit(pow, 3, n).get(timeout=60) for n in range(4)] == [1, 3, 9, 27]
        assert pool.restarts == 0
    finally:
        pool.close()
