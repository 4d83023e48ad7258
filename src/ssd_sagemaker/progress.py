"""How a long step shows its progress (training's epochs, validate-data, convert,
fetch-weights): a tqdm bar for a person watching a terminal, plain log lines for a log that is
collected and read later.

A TTY alone does not mean someone watches: the SageMaker SDK's local mode starts containers with
`tty: true` and docker-compose shows their output line by line, so a bar redrawn with `\\r`
never appears. SageMaker and the SDK's local mode both set `TRAINING_JOB_NAME`, so `auto` draws
a bar only on a TTY outside a training job. `SSD_PROGRESS=bar|lines` overrides the guess.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TextIO

from tqdm import tqdm

from ssd_sagemaker.environment import PROGRESS_STYLES, TrainingSettings, read_training_settings
from ssd_sagemaker.variables import SSD_PROGRESS, TRAINING_JOB_NAME, VariableReader


def draws_bar(settings: TrainingSettings | None = None, stream: TextIO | None = None) -> bool:
    """True: show a tqdm bar on `stream` (stderr); False: log progress lines instead.
    `settings`: the job's, read at start (None: read them now)."""
    settings = read_training_settings() if settings is None else settings
    if settings.progress_style != "auto":
        return settings.progress_style == "bar"
    stream = sys.stderr if stream is None else stream
    try:
        on_terminal = stream.isatty()
    except (AttributeError, ValueError):  # no stream, or a closed one: nobody watches it
        on_terminal = False
    return on_terminal and not settings.in_training_job


def progress_settings(environ: Mapping[str, str] = os.environ) -> TrainingSettings:
    """What decides a tool's progress display (`SSD_PROGRESS`, `TRAINING_JOB_NAME`), read
    alone: `convert` or `fetch-weights` need none of training's other variables."""
    reader = VariableReader(environ)
    style = reader.choice(SSD_PROGRESS, "auto", PROGRESS_STYLES)
    reader.check("progress")
    return TrainingSettings(progress_style=style,
                            in_training_job=bool(environ.get(TRAINING_JOB_NAME)))


class Progress:
    """How far one step has got, counted in `unit`s of `total` (None: unknown): a tqdm bar on
    stderr where `draws_bar` says someone watches, else a log line on `log` at most every
    `interval` seconds and at the end."""

    def __init__(self, description: str, total: int | None, unit: str, log: logging.Logger,
                 interval: float = 10.0, bar: bool | None = None):
        self.description, self.total, self.unit, self.log = description, total, unit, log
        self.interval, self.done = interval, 0
        self._started = self._reported = time.monotonic()
        bar = draws_bar(progress_settings()) if bar is None else bar
        self._bar = tqdm(total=total, desc=description, unit=unit, leave=False,
                         unit_scale=unit == "B") if bar else None

    def __enter__(self) -> Progress:
        return self

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
        elif time.monotonic() - self._reported >= self.interval:
            self._log_line()

    def _log_line(self) -> None:
        self._reported = time.monotonic()
        of = f" of {self.total:,}" if self.total else ""
        self.log.info("%s: %s%s %s(s), %.0f s", self.description, f"{self.done:,}", of,
                      self.unit, self._reported - self._started)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
        elif kind is None and self.done:
            self._log_line()
