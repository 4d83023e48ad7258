"""Error kinds and the failure/success files SageMaker reads.

A `ClientError` is the user's mistake (hyperparameters, data, artifact): its message is a
sentence that names the culprit and the fix, and it becomes the job's FailureReason.
Anything else is our fault and is reported as an `AlgorithmError` with the traceback as detail.
"""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

LOG = logging.getLogger(__name__)

# SageMaker shows only the first 1024 characters of the failure file as FailureReason.
FAILURE_REASON_LIMIT = 1024


class ClientError(Exception):
    """The user's input is invalid; the message names the culprit and the fix."""


class AlgorithmError(Exception):
    """An internal error of this program (not the user's fault)."""


STOPPED_EXIT_CODE = 128 + 15  # the shell's convention for "ended by SIGTERM"
INTERRUPTED_EXIT_CODE = 128 + 2  # ... and for "ended by SIGINT" (Ctrl-C)
USAGE_EXIT_CODE = 64  # sysexits.h's EX_USAGE: a bad option, apart from our own faults (2)


class JobStopped(Exception):
    """The job was stopped on request (SIGTERM, Ctrl-C) after saving its state: neither a
    success nor a failure, so no failure file."""

    exit_code = STOPPED_EXIT_CODE


def report_job_error(exc: BaseException, output_dir: Path | None) -> int:
    """Log a job's error, write the failure file (not for a stop) and return the exit code:
    143 stopped (130 by Ctrl-C), 1 ClientError, 2 anything else (AlgorithmError, with the
    traceback)."""
    if isinstance(exc, JobStopped):
        LOG.warning("%s", exc)
        return exc.exit_code
    if isinstance(exc, ClientError):
        LOG.error("ClientError: %s", _describe(exc))
    else:
        LOG.error("AlgorithmError: %s", _describe(exc), exc_info=exc)
    if output_dir is not None:
        write_failure(output_dir, exc)
    return 1 if isinstance(exc, ClientError) else 2


def end_job_at_once(exc: BaseException, output_dir: Path, release: Callable[[], None],
                    exit_code: int | None = None) -> NoReturn:
    """The job's exit where unwinding to `cli` would hang (ps-lite's exit barrier waits for
    workers that are stopping too): report `exc` as `report_job_error` does, `release` what
    must not outlive this process, flush the logs and end the process at once. `exit_code`
    replaces the reported one (a host stopped by another's failure exits 1, as that host)."""
    code = report_job_error(exc, output_dir)
    release()
    logging.shutdown()
    os._exit(code if exit_code is None else exit_code)


def _describe(exc: BaseException) -> str:
    """`str(exc)`, or a stand-in when that itself fails or says nothing."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the failure
        text = ""
    return text or "(no message)"


def failure_text(exc: BaseException) -> str:
    """The failure file's content: the readable sentence first, detail after."""
    if isinstance(exc, ClientError):
        return f"ClientError: {_describe(exc)}\n"
    try:
        detail = "".join(traceback.format_exception(exc))
    except Exception:  # noqa: BLE001 - as above
        detail = "(no traceback)"
    kind = "" if isinstance(exc, AlgorithmError) else f"{type(exc).__name__}: "
    return f"AlgorithmError: {kind}{_describe(exc)}\n\nDetail:\n{detail}"


def write_failure(output_dir: Path, exc: BaseException) -> Path:
    """Write `output/failure`, creating `output/` but never the tree above it; never raises
    (we are already failing). Text that is not
    Unicode (lone surrogates from file names or JSON escapes) is written as `\\udcff`
    escapes, so the file is never left empty."""
    path = Path(output_dir) / "failure"
    if not path.parent.parent.is_dir():  # no tree at all: the message said so, nothing to write
        return path
    try:
        path.parent.mkdir(exist_ok=True)  # never the base folder: a mistyped one stays absent
        path.write_text(failure_text(exc), encoding="utf-8", errors="backslashreplace")
    except OSError as os_error:  # pragma: no cover - nothing better to do than log
        LOG.error("could not write %s: %s", path, os_error)
        with contextlib.suppress(OSError):  # an empty or cut failure file would mislead
            path.unlink(missing_ok=True)
    return path


MARKER_FILES = ("failure", "success")


def clear_markers(output_dir: Path) -> None:
    """Remove an earlier run's `failure` and `success` files at the start of a run, so that
    the folder tells this run's outcome only (a local tree, a retried job on the same
    volume). One that cannot be removed is logged; the run goes on."""
    for name in MARKER_FILES:
        path = Path(output_dir) / name
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            LOG.warning("could not remove %s of an earlier run: %s", path, error)


def write_success(output_dir: Path) -> Path:
    """Write the empty `output/success` marker."""
    path = Path(output_dir) / "success"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("", encoding="utf-8")
    return path
