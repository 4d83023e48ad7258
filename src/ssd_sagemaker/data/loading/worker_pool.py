"""The loader's supervised worker processes: a pool that runs a function on its arguments in
another process and notices when that process dies.

Workers are started with `spawn` (a clean interpreter: forking a process that runs MXNet's and
OpenCV's thread pools can deadlock the child), import only what their tasks need (the batch
work of `batch_work.py` never imports MXNet), and run OpenCV single-threaded: parallelism
comes from the worker count.

The pool is our own, not `multiprocessing.Pool`, which loses a killed worker's task (its
`get()` then waits forever) and whose `terminate()` can block forever when a worker died
holding the shared queue's lock (both seen after SIGKILL / SIGTERM to the process group).
Here every worker has its own pipes, the pool waits on the worker's exit as well as its
result, so a death is noticed at once and its batches are redone by a replacement; the
shared-memory blocks of a dead worker's batches are freed.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing import connection, resource_tracker
from multiprocessing.connection import Connection
from typing import Any

import cv2

from ssd_sagemaker.data.loading.batch_work import free_blocks
from ssd_sagemaker.errors import AlgorithmError

LOG = logging.getLogger(__name__)


class _Ready:
    """The result of a task run in the calling process (no workers)."""

    def __init__(self, function: Callable, args: tuple):
        self._function, self._args = function, args

    def get(self, timeout: float | None = None) -> Any:
        return self._function(*self._args)


# A worker that dies (SIGKILL from the kernel's out-of-memory killer, a crash in a decoder) is
# replaced and its batches redone this many times per job; the next death stops the job.
MAX_WORKER_RESTARTS = 3
STOP_SECONDS = 5.0


class WorkerLost(AlgorithmError):
    """A loader worker died (one more time than the pool replaces)."""

    def __init__(self, pid: int, exitcode: int | None, batches: int, restarts: int):
        self.pid, self.exitcode = pid, exitcode
        super().__init__(
            f"Data-loader worker process {pid} {_death(exitcode)} while making {batches} "
            f"batch(es) ({restarts} dead worker(s) already replaced in this job). "
            + (f"{_death_cause(exitcode)} " if exitcode is not None else "")
            + "The last checkpoint is kept: run the job again to resume.")


def _death(exitcode: int | None) -> str:
    if exitcode is None:
        return "closed its connection"
    if exitcode < 0:
        return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with status {exitcode}"


def _death_cause(exitcode: int) -> str:
    if exitcode == -signal.SIGKILL:
        return ("SIGKILL is most often the kernel's out-of-memory killer (see the instance's "
                "memory metrics or `dmesg`): every worker holds batches of mini_batch_size "
                "images of image_shape x image_shape pixels; lower mini_batch_size or "
                "image_shape, or use an instance with more memory.")
    return ("Its own last words, if any, are in the log above; a crash while decoding or "
            "augmenting images is a fault of this algorithm or of its image libraries.")


_GROUP_SIGNALS = {signal.SIGINT, signal.SIGTERM}  # the training process's to handle


def _serve(tasks: Connection, results: Connection) -> None:
    """A worker's life: run the tasks as they come and send back (task id, ok, value), until
    the pool closes the connection or goes away (EOF). SIGINT and SIGTERM are the training
    process's to handle: a signal sent to the whole process group must not kill a worker
    in the middle of a batch the training process is waiting for."""
    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _GROUP_SIGNALS)  # born blocked: see _Worker
    while True:
        try:
            task_id, function, args = tasks.recv()
        except (EOFError, OSError):
            return
        try:
            reply = (task_id, True, function(*args))
        except Exception as error:  # noqa: BLE001 - handed to the caller of get()
            reply = (task_id, False, error)
        try:
            try:
                results.send(reply)
            except (pickle.PicklingError, TypeError, AttributeError) as error:
                results.send((task_id, False, AlgorithmError(
                    f"a loader worker's result cannot be sent back: {error!r}")))
        except OSError:  # the pool is gone
            return


_PENDING = object()


class _Task:
    """One submitted call: its message, the worker running it, then its outcome."""

    def __init__(self, pool: WorkerPool, task_id: int, function: Callable, args: tuple):
        self.pool = pool
        self.message = (task_id, function, args)
        self.worker: _Worker | None = None
        self.ok = False
        self.value: Any = _PENDING

    @property
    def id(self) -> int:
        return self.message[0]

    def ready(self) -> bool:
        return self.value is not _PENDING

    def get(self, timeout: float | None = None) -> Any:
        """The result (or the task's exception), waiting up to `timeout` seconds (TimeoutError);
        a WorkerLost when its worker died once too often."""
        self.pool.wait_for(self, timeout)
        if not self.ok:
            raise self.value
        return self.value


class _Worker:
    """One spawned process with its own task and result pipes (no lock shared with other
    workers: a worker killed mid-read cannot wedge the rest, or the pool's shutdown). A
    thread feeds the task pipe, so submitting never blocks on a busy worker."""

    def __init__(self, context: multiprocessing.context.SpawnContext, name: str):
        task_reader, self._task_writer = context.Pipe(duplex=False)
        self.results, result_writer = context.Pipe(duplex=False)
        self.process = context.Process(target=_serve, args=(task_reader, result_writer),
                                       name=name, daemon=True)
        # The new process inherits this thread's signal mask: with the group's signals blocked
        # while it starts, one sent to the whole group before the worker ignores them stays
        # pending (and is then discarded) instead of killing it; here it arrives on unblocking.
        # (Starting multiprocessing's resource tracker unblocks both signals: start it first.)
        resource_tracker.ensure_running()
        unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, _GROUP_SIGNALS)
        try:
            self.process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
        task_reader.close()
        result_writer.close()
        self.pid: int = self.process.pid  # type: ignore[assignment]
        self.assigned: collections.deque[_Task] = collections.deque()  # in the order sent
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._feeder = threading.Thread(target=self._feed, name=f"{name}-feeder", daemon=True)
        self._feeder.start()

    def _feed(self) -> None:
        while (message := self._outbox.get()) is not None:
            try:
                self._task_writer.send(message)
            except OSError:  # the worker died: the pool notices through its sentinel
                return

    def send(self, task: _Task) -> None:
        task.worker = self
        self.assigned.append(task)
        self._outbox.put(task.message)

    def stop(self) -> None:
        """End the process (it holds nothing worth waiting for) and release the pipes."""
        self._outbox.put(None)
        if self.process.is_alive():
            self.process.kill()
        self.process.join(STOP_SECONDS)
        self._feeder.join(STOP_SECONDS)
        for pipe_end in (self._task_writer, self.results):
            pipe_end.close()


class WorkerPool:
    """A pool of `workers` spawned processes (0: run tasks in the calling process) that
    notices a worker's death within `POLL` seconds while a result is awaited, replaces the
    worker and redoes its batches (`MAX_WORKER_RESTARTS` times per pool), and can always be
    closed promptly."""

    def __init__(self, workers: int):
        self.workers = workers
        self.restarts = 0
        self._ids = itertools.count()
        self._context = multiprocessing.get_context("spawn")
        self._pool: list[_Worker] | None = None
        if workers > 0:
            self._pool = [_Worker(self._context, f"ssd-loader-{index}")
                          for index in range(workers)]
            atexit.register(self.close)  # before multiprocessing's exit handler joins them

    def submit(self, function: Callable, *args: Any) -> Any:
        """A handle whose `get()` returns `function(*args)` (or raises its exception)."""
        if self._pool is None:
            return _Ready(function, args)
        task = _Task(self, next(self._ids), function, args)
        min(self._pool, key=lambda worker: len(worker.assigned)).send(task)
        return task

    @property
    def running(self) -> bool:
        return self._pool is not None

    @property
    def pids(self) -> list[int]:
        return [worker.pid for worker in self._pool or ()]

    def wait_for(self, task: _Task, timeout: float | None) -> None:
        """Receive results until `task`'s has come, replacing workers that die meanwhile."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not task.ready():
            if self._pool is None:
                raise AlgorithmError("the data-loader worker pool was closed")
            worker = task.worker
            assert worker is not None
            # Read by the progress watchdog if the job stalls here (training/watchdog.py).
            waiting_for = f"a batch from data-loader worker process {worker.pid}"  # noqa: F841
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"no result from loader worker {worker.pid}")
            ready = connection.wait([worker.results, worker.process.sentinel], left)
            if worker.results in ready:
                try:
                    task_id, ok, value = worker.results.recv()
                except (EOFError, OSError):
                    self._replace(worker)
                    continue
                done = worker.assigned.popleft()
                assert done.id == task_id, "a worker's results come in the order sent"
                done.ok, done.value = ok, value
            elif worker.process.sentinel in ready:
                self._replace(worker)

    def _replace(self, worker: _Worker) -> None:
        """A worker died: start another and send it the dead one's batches, or stop the job
        (WorkerLost) when this has happened too often."""
        assert self._pool is not None
        worker.process.join(STOP_SECONDS)
        exitcode = worker.process.exitcode
        lost = list(worker.assigned)
        free_blocks(os.getpid(), worker.pid)
        worker.stop()
        if self.restarts >= MAX_WORKER_RESTARTS:
            self.close()
            raise WorkerLost(worker.pid, exitcode, len(lost), self.restarts)
        self.restarts += 1
        replacement = _Worker(self._context, worker.process.name)
        self._pool[self._pool.index(worker)] = replacement
        LOG.warning("data-loader worker process %d %s while making %d batch(es); replaced by "
                    "process %d, which makes them again (%d of %d replacements)", worker.pid,
                    _death(exitcode), len(lost), replacement.pid, self.restarts,
                    MAX_WORKER_RESTARTS)
        for task in lost:
            replacement.send(task)

    def close(self) -> None:
        """Stop every worker at once and free the shared memory of batches never used."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        atexit.unregister(self.close)
        for worker in pool:
            worker.stop()
        free_blocks(os.getpid())
