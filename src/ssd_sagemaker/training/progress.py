"""How training shows its progress: a tqdm bar for a person watching a terminal, plain log
lines (batch, images/s, eta) for a log that is collected and read later.

A TTY alone does not mean someone watches: the SageMaker SDK's local mode starts containers with
`tty: true` and docker-compose shows their output line by line, so a bar redrawn with `\\r`
never appears. SageMaker and the SDK's local mode both set `TRAINING_JOB_NAME`, so `auto` draws
a bar only on a TTY outside a training job. `SSD_PROGRESS=bar|lines` overrides the guess.
"""

from __future__ import annotations

import sys
from typing import TextIO

from ssd_sagemaker.environment import TrainingSettings, read_training_settings


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
