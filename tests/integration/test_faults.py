"""Training under faults, with real processes and real signals: a `train` process in its own
process group on tiny demo data, whose data-loader workers are SIGKILLed or SIGSTOPped, whose
group gets SIGTERM or Ctrl-C (SIGINT), or whose Pipe-mode stream stops flowing. Each test
asserts the exit code, the failure file, the checkpoint, how fast the job reacted, and that
no process of the job outlives it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli_runner import FLOAT32, cli_env, write_demo_job, write_hyperparameters
from planting import annotated_examples, recordio_payloads, write_stream

pytestmark = pytest.mark.slow

BASE = {"num_classes": "3", "num_training_samples": "4", "epochs": "1", "mini_batch_size": "2",
        "use_pretrained_model": "0", "image_shape": "300", **FLOAT32}
LOADER_WORKER = "spawn_main"  # in the command line of multiprocessing's spawned processes


class Job:
    """`python -m ssd_sagemaker train` in its own process group; its output is collected
    line by line, with the time each line arrived."""

    def __init__(self, base: Path, **environment: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ssd_sagemaker", "train"], env=cli_env(base, **environment),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line))

    @property
    def output(self) -> str:
        return "".join(line for _, line in self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 600) -> float:
        """When the first line matching `pattern` arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for arrived, line in list(self.lines):
                if re.search(pattern, line):
                    return arrived
            if not self._reader.is_alive() and not any(re.search(pattern, line)
                                                       for _, line in self.lines):
                raise AssertionError(f"the job ended before {pattern!r}:\n"
                                     f"{self.output[-4000:]}")
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n{self.output[-4000:]}")

    def wait(self, timeout: float) -> int:
        """The exit code; the job's output is complete afterwards."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the job did not exit within {timeout} s:\n"
                                 f"{self.output[-4000:]}") from None
        self._reader.join(10)
        return code

    def loader_workers(self) -> list[int]:
        """The pids of the job's data-loader worker processes (its spawned children)."""
        return [pid for pid in _children(self.process.pid)
                if LOADER_WORKER in _command_line(pid)]

    def kill_group(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)


def _children(pid: int) -> list[int]:
    children = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as listing:
                children += [int(child) for child in listing.read().split()]
    except OSError:
        pass
    return children


def _command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as command:
            return command.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _group_members(pgid: int) -> list[str]:
    """Live (not zombie) processes of process group `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(f"{entry} {_command_line(int(entry))[:120]}")
    return members


def assert_no_orphans(job: Job, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while (members := _group_members(job.process.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not members, f"processes of the job outlived it: {members}"
    leftover = list(Path("/dev/shm").glob(f"ssd_batch_{job.process.pid}_*"))
    assert not leftover, f"shared memory left behind: {leftover}"


@pytest.fixture
def jobs():
    """Start jobs; every one still running at the end is killed with its group."""
    started: list[Job] = []

    def start(base: Path, **environment: str) -> Job:
        started.append(Job(base, **environment))
        return started[-1]
    yield start
    for job in started:
        job.kill_group()


def _demo(base: Path, train: int = 4, validation: int = 2, **hyperparameters: str) -> None:
    write_demo_job(base, dict(BASE, num_training_samples=str(train), **hyperparameters), train,
                   validation, timeout=120)


def _checkpoint(base: Path) -> dict:
    return json.loads((base / "checkpoints" / "checkpoint.json").read_text())


def _signal_mid_epoch(base: Path, jobs, signum: int) -> tuple[Job, float]:
    """A job on demo data whose process group gets `signum` after its first batch; when."""
    _demo(base)
    job = jobs(base)
    job.wait_for_line(r"epoch 0 batch 1/2")
    assert job.loader_workers(), "the job has loader workers when it is signalled"
    os.killpg(job.process.pid, signum)
    return job, time.monotonic()


def test_a_killed_loader_worker_is_replaced_and_its_batches_redone(tmp_path, jobs):
    _demo(tmp_path, validation=8)  # 4 validation batches: each worker is sent some
    job = jobs(tmp_path)
    job.wait_for_line(r"epoch 0 batch 1/2")
    victim = job.loader_workers()[0]
    # Stopped first, so it cannot finish what it holds or is sent before it dies: killed
    # outright once validation began, under load it had sometimes delivered everything
    # already, and a death nothing waits for is noticed by no one.
    os.kill(victim, signal.SIGSTOP)
    with contextlib.suppress(AssertionError):  # or the job awaits its last training batch
        job.wait_for_line(r"epoch 0: cross_entropy", timeout=20)
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    noticed = job.wait_for_line(rf"worker process {victim} was killed by SIGKILL", timeout=60)
    assert job.wait(timeout=300) == 0, job.output[-4000:]
    print(f"dead worker noticed after {noticed - killed:.2f} s")
    assert re.search(r"replaced by process \d+, which makes them again", job.output)
    assert "validation mAP" in job.output
    assert (tmp_path / "output" / "success").exists()
    assert not (tmp_path / "output" / "failure").exists()
    assert _checkpoint(tmp_path)["next_epoch"] == 1
    assert_no_orphans(job)


def test_loader_workers_killed_again_and_again_stop_the_job_naming_the_cause(tmp_path, jobs):
    _demo(tmp_path, epochs="2")
    job = jobs(tmp_path)
    job.wait_for_line(r"checkpoint \S+ saved to .*next epoch 1\)")
    # The OOM killer, again and again: every worker, the replacements too, is stopped on
    # sight (so it cannot finish a batch first) and killed a moment later.
    killed: list[int] = []
    stopped: dict[int, float] = {}
    last_kill = time.monotonic()
    give_up = last_kill + 180
    while job.process.poll() is None and time.monotonic() < give_up:
        for pid in job.loader_workers():
            if pid not in stopped:
                os.kill(pid, signal.SIGSTOP)
                stopped[pid] = time.monotonic()
        for pid, when in stopped.items():
            if pid not in killed and time.monotonic() - when > 0.3:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                last_kill = time.monotonic()
        time.sleep(0.01)
    code = job.wait(timeout=60)
    print(f"job stopped {time.monotonic() - last_kill:.2f} s after the last kill")
    assert code == 2, job.output[-4000:]
    assert time.monotonic() - last_kill < 30
    failure = (tmp_path / "output" / "failure").read_text()
    first_line = failure.splitlines()[0]
    assert re.match(r"AlgorithmError: Data-loader worker process (\d+) was killed by SIGKILL",
                    first_line), failure
    assert int(re.search(r"process (\d+)", first_line).group(1)) in killed
    assert "3 dead worker(s) already replaced" in first_line
    assert "out-of-memory killer" in first_line
    assert "mini_batch_size" in first_line and "image_shape" in first_line
    assert _checkpoint(tmp_path)["next_epoch"] == 1  # epoch 0's checkpoint is kept
    assert (tmp_path / "checkpoints").is_dir() and any((tmp_path / "checkpoints").iterdir())
    assert_no_orphans(job)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_process_group_checkpoints_and_exits(tmp_path, jobs, signum, code):
    """SIGTERM to every process (`kill -- -PGID`, `timeout`), or Ctrl-C in a terminal."""
    job, signalled = _signal_mid_epoch(tmp_path, jobs, signum)
    assert job.wait(timeout=120) == code, job.output[-4000:]
    exited = time.monotonic()
    checkpointed = job.wait_for_line(r"checkpoint \S+ saved to ")
    print(f"exit {code} {exited - signalled:.1f} s after {signum.name} to the group (the step "
          f"under way included), {exited - checkpointed:.1f} s after the checkpoint")
    assert exited - signalled < 60
    assert exited - checkpointed < 10  # the old pool could hang here forever
    assert f"{signum.name} received" in job.output
    assert f"training stopped by {signum.name} in epoch 0 after" in job.output
    state = _checkpoint(tmp_path)
    assert (state["next_epoch"], state["interrupted_in_epoch"]) == (0, 0)
    assert "validation mAP" not in job.output  # it did not run on to the end
    assert not (tmp_path / "output" / "failure").exists()
    assert not (tmp_path / "output" / "success").exists()
    assert_no_orphans(job)


def test_a_second_ctrl_c_ends_the_job_at_once(tmp_path, jobs):
    job, _ = _signal_mid_epoch(tmp_path, jobs, signal.SIGINT)
    job.wait_for_line(r"SIGINT received", timeout=60)
    os.killpg(job.process.pid, signal.SIGINT)
    signalled = time.monotonic()
    code = job.wait(timeout=30)
    seconds = time.monotonic() - signalled
    print(f"second Ctrl-C: exit after {seconds:.2f} s")
    assert code == -signal.SIGINT, job.output[-4000:]  # the shell shows 130
    assert seconds < 5
    assert_no_orphans(job)


def _stalling_pipe(base: Path, records: list[bytes]) -> subprocess.Popen:
    """SageMaker's part in Pipe mode, stopping after `records`: the FIFO train_0 stays open
    and nothing more comes."""
    fifo = base / "input" / "data" / "train_0"
    fifo.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(fifo)
    stream = write_stream(base / "scratch" / "train.stream", records)
    writer = (f"import time; fifo = open({str(fifo)!r}, 'wb'); "
              f"fifo.write(open({str(stream)!r}, 'rb').read()); fifo.flush(); time.sleep(600)")
    return subprocess.Popen([sys.executable, "-c", writer])


def test_watchdog_stops_a_job_whose_pipe_mode_stream_stalls(tmp_path, jobs):
    # 40 records: the 32 read at start-up to check the format, and a few more; then silence.
    records = recordio_payloads(annotated_examples(tmp_path / "scratch", "train")) * 20
    writer = _stalling_pipe(tmp_path, records)
    try:
        (tmp_path / "input" / "config").mkdir(parents=True, exist_ok=True)
        (tmp_path / "input" / "config" / "inputdataconfig.json").write_text(json.dumps(
            {"train": {"ContentType": "application/x-recordio", "TrainingInputMode": "Pipe"}}))
        write_hyperparameters(tmp_path, dict(BASE, num_training_samples="40"))
        job = jobs(tmp_path, SSD_PROGRESS_TIMEOUT="3")  # start-up's 32 records fit in 6 s
        started = job.wait_for_line(r"training vgg-16 SSD at 300 px")
        assert job.wait(timeout=120) == 2, job.output[-4000:]
        print(f"Pipe-mode stall: job stopped {time.monotonic() - started:.1f} s after the "
              f"network build began (limit 3 s x 2 in Pipe mode)")
    finally:
        writer.kill()
        writer.wait()
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure.startswith(
        "AlgorithmError: No batch completed for 6 s in training epoch 0 (after 0 batch(es) "
        "of it): the job was waiting for the next samples from the data channel (at "), failure
    assert "SSD_PROGRESS_TIMEOUT allows 6 s (doubled in Pipe mode)" in failure
    assert "Pipe mode" in failure.splitlines()[0]
    assert_no_orphans(job)


@pytest.mark.parametrize("writer_opens", [True, False], ids=["silent-writer", "no-writer"])
def test_watchdog_stops_a_pipe_mode_job_whose_fifo_stays_silent_at_start(tmp_path, jobs,
                                                                        writer_opens):
    """The start-up read of the first samples is watched too: a FIFO that SageMaker never
    opens, or opens and sends nothing through, ends the job (it used to hang there)."""
    fifo = tmp_path / "input" / "data" / "train_0"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    writer = subprocess.Popen([sys.executable, "-c", f"import time; fifo = open({str(fifo)!r}, "
                               f"'wb'); time.sleep(600)"]) if writer_opens else None
    try:
        (tmp_path / "input" / "config").mkdir(parents=True, exist_ok=True)
        (tmp_path / "input" / "config" / "inputdataconfig.json").write_text(json.dumps(
            {"train": {"ContentType": "application/x-recordio", "TrainingInputMode": "Pipe"}}))
        write_hyperparameters(tmp_path, dict(BASE, num_training_samples="40"))
        job = jobs(tmp_path, SSD_PROGRESS_TIMEOUT="1")
        assert job.wait(timeout=120) == 2, job.output[-4000:]
    finally:
        if writer is not None:
            writer.kill()
            writer.wait()
    waited = ("the first samples from the FIFO train_0" if writer_opens
              else f"SageMaker to open the FIFO {fifo} for writing")
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure.startswith(
        f"AlgorithmError: No batch completed for 2 s in start-up, reading the first samples of "
        f"the Pipe-mode channels (after 0 batch(es) of it): the job was waiting for {waited} "
        f"(at "), failure
    assert "training vgg-16 SSD" not in job.output  # stopped before the network was built
    assert_no_orphans(job)


def test_watchdog_stops_a_job_whose_loader_worker_hangs(tmp_path, jobs):
    _demo(tmp_path)
    job = jobs(tmp_path, SSD_PROGRESS_TIMEOUT="3")
    deadline = time.monotonic() + 300
    while not (workers := job.loader_workers()):
        assert time.monotonic() < deadline and job.process.poll() is None, job.output[-4000:]
        time.sleep(0.02)
    os.kill(workers[0], signal.SIGSTOP)  # alive, holding its batch, never finishing it
    stopped = time.monotonic()
    assert job.wait(timeout=120) == 2, job.output[-4000:]
    print(f"hung worker: job stopped {time.monotonic() - stopped:.1f} s after SIGSTOP "
          f"(limit 3 s)")
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure.startswith(
        f"AlgorithmError: No batch completed for 3 s in training epoch 0 (after 0 batch(es) "
        f"of it): the job was waiting for a batch from data-loader worker process "
        f"{workers[0]} (at worker_pool.py:"), failure
    assert_no_orphans(job)
