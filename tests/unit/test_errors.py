"""errors.py: every job error becomes an exit code and a failure file that is never empty, even
when its text is not Unicode or the exception cannot describe itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ssd_sagemaker.errors import (
    STOPPED_EXIT_CODE,
    AlgorithmError,
    ClientError,
    JobStopped,
    end_job_at_once,
    report_job_error,
)


def _failure(output_dir: Path) -> str:
    return (output_dir / "failure").read_text(encoding="utf-8")


def test_client_error_is_exit_1_and_its_sentence(tmp_path: Path) -> None:
    assert report_job_error(ClientError("epochs: '0' is invalid"), tmp_path) == 1
    assert _failure(tmp_path) == "ClientError: epochs: '0' is invalid\n"


def test_other_errors_are_exit_2_with_the_traceback_as_detail(tmp_path: Path) -> None:
    try:
        {}["missing"]
    except KeyError as error:
        assert report_job_error(error, tmp_path) == 2
    text = _failure(tmp_path)
    assert text.startswith("AlgorithmError: KeyError: 'missing'\n\nDetail:\nTraceback")


def test_stop_is_143_without_a_failure_file(tmp_path: Path) -> None:
    assert report_job_error(JobStopped("stopped"), tmp_path) == STOPPED_EXIT_CODE
    assert not (tmp_path / "failure").exists()


@pytest.mark.parametrize("error, expected", [
    (ClientError("channel 'train\udead' is unknown"), "ClientError: channel 'train\\udead' is "
                                                      "unknown\n"),
    (ClientError("file train/\udcff.jpg"), "ClientError: file train/\\udcff.jpg\n"),
    (AlgorithmError("bad \ud800 text"), "AlgorithmError: bad \\ud800 text\n\nDetail:\n"),
])
def test_lone_surrogates_are_escaped_not_an_empty_failure_file(tmp_path: Path, error: Exception,
                                                               expected: str) -> None:
    """A lone surrogate (from a JSON escape or a file name that is not UTF-8) cannot be
    written as UTF-8: the file used to be left empty, with a traceback on stderr."""
    report_job_error(error, tmp_path)
    assert _failure(tmp_path).startswith(expected)


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


@pytest.mark.parametrize("error, expected", [
    (ClientError(""), "ClientError: (no message)\n"),
    (_Unprintable(), "AlgorithmError: _Unprintable: (no message)\n\nDetail:\n"),
    (MemoryError(), "AlgorithmError: MemoryError: (no message)\n\nDetail:\n"),
])
def test_errors_without_a_message_still_fill_the_failure_file(tmp_path: Path, error: Exception,
                                                              expected: str) -> None:
    report_job_error(error, tmp_path)
    assert _failure(tmp_path).startswith(expected)


def _exit_code_of(action) -> int:
    """Run `action` in a forked child, which it ends with `os._exit`; its exit status."""
    pid = os.fork()
    if pid == 0:  # the child: whatever happens, never return into pytest
        try:
            action()
        finally:
            os._exit(99)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.parametrize("error, override, code, first_line", [
    (ClientError("mini_batch_size=16 is too large"), None, 1,
     "ClientError: mini_batch_size=16 is too large"),
    (ValueError("boom"), None, 2, "AlgorithmError: ValueError: boom"),
    (AlgorithmError("Training failed on host algo-2"), 1, 1,
     "AlgorithmError: Training failed on host algo-2"),
])
def test_ending_a_job_at_once_reports_releases_and_exits(tmp_path: Path, error, override, code,
                                                         first_line) -> None:
    """The distributed exit path: the same failure file and exit code as `cli` would give,
    the release run, and the process gone without unwinding (the child's `finally` would
    exit 99)."""
    released = tmp_path / "released"
    exit_code = _exit_code_of(lambda: end_job_at_once(
        error, tmp_path / "output", lambda: released.write_text("roles stopped"), override))
    assert exit_code == code
    assert (tmp_path / "output" / "failure").read_text().splitlines()[0] == first_line
    assert released.read_text() == "roles stopped"


def test_ending_a_stopped_job_at_once_writes_no_failure(tmp_path: Path) -> None:
    assert _exit_code_of(lambda: end_job_at_once(JobStopped("stopped"), tmp_path,
                                                 lambda: None)) == STOPPED_EXIT_CODE
    assert not (tmp_path / "failure").exists()
