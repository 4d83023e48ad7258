"""progress.py: a bar only where someone watches a terminal; SSD_PROGRESS overrides; a bad value
stops `train` at once with a ClientError in the failure file."""

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssd_sagemaker.environment import read_training_settings
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.progress import draws_bar

SRC = Path(__file__).resolve().parents[3] / "src"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


class _Closed(io.StringIO):
    def isatty(self):
        raise ValueError("I/O operation on closed file")


@pytest.mark.parametrize("environ, stream, expected", [
    ({}, _Terminal(), True),                                        # a person at a terminal
    ({}, io.StringIO(), False),                                     # piped / collected log
    ({"TRAINING_JOB_NAME": "job-1"}, _Terminal(), False),           # SDK local mode: tty: true
    ({"TRAINING_JOB_NAME": "job-1"}, io.StringIO(), False),         # SageMaker
    ({"SSD_PROGRESS": "auto"}, _Terminal(), True),
    ({"SSD_PROGRESS": "auto", "TRAINING_JOB_NAME": "j"}, _Terminal(), False),
    ({"SSD_PROGRESS": "bar"}, io.StringIO(), True),                 # asked for: drawn anyway
    ({"SSD_PROGRESS": "bar", "TRAINING_JOB_NAME": "j"}, io.StringIO(), True),
    ({"SSD_PROGRESS": "lines"}, _Terminal(), False),
    ({"SSD_PROGRESS": " Lines "}, _Terminal(), False),              # case and spaces forgiven
    ({"SSD_PROGRESS": ""}, _Terminal(), True),                      # empty = unset = auto
    ({}, _Closed(), False),
])
def test_draws_bar(environ, stream, expected):
    assert draws_bar(read_training_settings(environ), stream) is expected


def test_default_streams_are_the_process_environment_and_stderr(monkeypatch):
    monkeypatch.setattr("sys.stderr", _Terminal())
    monkeypatch.delenv("TRAINING_JOB_NAME", raising=False)
    monkeypatch.setenv("SSD_PROGRESS", "auto")
    assert draws_bar() is True
    monkeypatch.setenv("TRAINING_JOB_NAME", "job-1")
    assert draws_bar() is False


@pytest.mark.parametrize("value", ["spinner", "1", "true", "bars"])
def test_a_bad_value_names_the_variable_and_its_values(value):
    with pytest.raises(ClientError) as error:
        read_training_settings({"SSD_PROGRESS": value})
    message = str(error.value)
    assert f"SSD_PROGRESS={value!r}" in message
    assert "auto, bar, lines" in message


@pytest.mark.parametrize("variables, named", [
    ({"SSD_PROGRESS": "spinner"}, ["SSD_PROGRESS='spinner'", "auto, bar, lines"]),
    ({"SSD_PROGRESS": "spinner", "SSD_JOIN_TIMEOUT": "later", "SSD_SCHEDULER_PORT": "http"},
     ["SSD_PROGRESS='spinner'", "SSD_JOIN_TIMEOUT='later'", "SSD_SCHEDULER_PORT='http'"]),
])
def test_train_fails_at_start_on_a_bad_value(tmp_path, variables, named):
    """Before reading any config or data (the tree is empty): the failure file names every bad
    variable, not a missing channel."""
    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(tmp_path), **variables,
               PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-m", "ssd_sagemaker", "train"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure.startswith("ClientError"), failure
    assert all(text in failure for text in named), failure
    assert "Traceback" not in failure


def test_a_tool_step_logs_its_progress_when_nobody_watches(caplog):
    from ssd_sagemaker.progress import Progress

    log = logging.getLogger("ssd_sagemaker.test")
    with caplog.at_level(logging.INFO, logger="ssd_sagemaker.test"):
        with Progress("convert: writing train", 1200, "image", log, interval=0,
                      bar=False) as progress:
            for _ in range(3):
                progress.advance(400)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("convert: writing train: 400 of 1,200 image(s), ")
    assert lines[-1].startswith("convert: writing train: 1,200 of 1,200 image(s), ")


def test_a_tool_step_draws_a_bar_on_a_terminal(monkeypatch, caplog):
    from ssd_sagemaker.progress import Progress

    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    for name in ("TRAINING_JOB_NAME", "SSD_PROGRESS", "SSD_JOIN_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSD_JOIN_TIMEOUT", "never")  # training's own variables do not matter
    with caplog.at_level(logging.INFO):
        with Progress("fetch-weights: x.params", 2048, "B", logging.getLogger("t")) as progress:
            progress.advance(1024)
            progress.advance(1024)
    drawn = terminal.getvalue()
    assert "fetch-weights: x.params:   0%|" in drawn and "/2.05k" in drawn
    assert caplog.records == []
