"""How training shows its progress: a tqdm bar for a person watching a terminal, plain log
lines (batch, images/s, eta) for a log that is collected and read later.

A TTY alone does not mean someone watches: the SageMaker SDK's local mode starts containers with
`tty: true` and docker-compose shows their output line by line, so a bar redrawn with `\\r`
never appears. SageMaker and the SDK's local mode both set `TRAINING_JOB_NAME`, so `auto` draws
a bar only on a TTY outside a training job. `SSD_PROGRESS=bar|lines` overrides the guess.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping, TextIO

from ssd_sagemaker.errors import ClientError

PROGRESS_VARIABLE = "SSD_PROGRESS"
STYLES = ("auto", "bar", "lines")
JOB_NAME_VARIABLE = "TRAINING_JOB_NAME"


def progress_style(environ: Mapping[str, str] | None = None) -> str:
    """`SSD_PROGRESS` (default `auto`), checked: a ClientError names the variable and its values."""
    environ = os.environ if environ is None else environ
    raw = environ.get(PROGRESS_VARIABLE, "")
    style = raw.strip().lower() or "auto"
    if style not in STYLES:
        raise ClientError(
            f"{PROGRESS_VARIABLE}={raw!r} is not a progress style: use {', '.join(STYLES)} "
            f"(bar: a tqdm bar, lines: log lines, auto: a bar only on a terminal outside a "
            f"training job), or leave it unset."
        )
    return style


def draws_bar(environ: Mapping[str, str] | None = None, stream: TextIO | None = None) -> bool:
    """True: show a tqdm bar on `stream` (stderr); False: log progress lines instead."""
    environ = os.environ if environ is None else environ
    style = progress_style(environ)
    if style != "auto":
        return style == "bar"
    stream = sys.stderr if stream is None else stream
    try:
        on_terminal = stream.isatty()
    except (AttributeError, ValueError):  # no stream, or a closed one: nobody watches it
        on_terminal = False
    return on_terminal and not environ.get(JOB_NAME_VARIABLE)
