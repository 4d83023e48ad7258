"""Every environment variable the container reads, named once, and the one typed reader that
training's and serving's settings are tables over (the training toolkit's `params.py`): each
value is parsed by kind (seconds, port, int or number in a range, choice) and every problem is
collected, so one ClientError names every bad variable with what it takes."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from ssd_sagemaker.errors import ClientError

# SageMaker's (the training and inference toolkits' names)
SAGEMAKER_BASE_DIR = "SAGEMAKER_BASE_DIR"
TRAINING_JOB_NAME = "TRAINING_JOB_NAME"
SAGEMAKER_BIND_TO_PORT = "SAGEMAKER_BIND_TO_PORT"
SAGEMAKER_MODEL_SERVER_WORKERS = "SAGEMAKER_MODEL_SERVER_WORKERS"
SAGEMAKER_MODEL_SERVER_TIMEOUT = "SAGEMAKER_MODEL_SERVER_TIMEOUT"
SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS = "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS"
SAGEMAKER_MAX_PAYLOAD_IN_MB = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
SAGEMAKER_MULTI_MODEL = "SAGEMAKER_MULTI_MODEL"
SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
SAGEMAKER_CONTAINER_LOG_LEVEL = "SAGEMAKER_CONTAINER_LOG_LEVEL"
# this container's: training
SSD_PROGRESS = "SSD_PROGRESS"
SSD_PROGRESS_TIMEOUT = "SSD_PROGRESS_TIMEOUT"
SSD_SCHEDULER_PORT = "SSD_SCHEDULER_PORT"
SSD_HOST_RESOLVE_TIMEOUT = "SSD_HOST_RESOLVE_TIMEOUT"
SSD_JOIN_TIMEOUT = "SSD_JOIN_TIMEOUT"
# this container's: inference (serve, predict)
SSD_MAX_IMAGE_PIXELS = "SSD_MAX_IMAGE_PIXELS"
SSD_SCORE_THRESHOLD = "SSD_SCORE_THRESHOLD"
SSD_MAX_DETECTIONS = "SSD_MAX_DETECTIONS"
SSD_DRAW_THRESHOLD = "SSD_DRAW_THRESHOLD"
SSD_INFERENCE_PRECISION = "SSD_INFERENCE_PRECISION"
SSD_MME_MEMORY_LIMIT_MB = "SSD_MME_MEMORY_LIMIT_MB"
SSD_TILE = "SSD_TILE"
SSD_TILE_OVERLAP = "SSD_TILE_OVERLAP"
SSD_MAX_TILES = "SSD_MAX_TILES"
# the libraries'
OMP_NUM_THREADS = "OMP_NUM_THREADS"
CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
MXNET_HOME = "MXNET_HOME"
MXNET_GLUON_REPO = "MXNET_GLUON_REPO"
MXNET_USE_FUSION = "MXNET_USE_FUSION"
MXNET_CUDNN_AUTOTUNE_DEFAULT = "MXNET_CUDNN_AUTOTUNE_DEFAULT"

T = TypeVar("T")


class VariableReader:
    """Reads variables one by one from `environ`, collecting every problem instead of stopping
    at the first; `check` raises them together. An unset or blank variable is its default."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ
        self.problems: list[str] = []

    def value(self, name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
        """`parse(text)` of variable `name` (a ValueError: not `expected`), or `default`."""
        raw = (self.environ.get(name) or "").strip()
        if not raw:
            return default
        try:
            return parse(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not {expected}.")
            return default

    def integer(self, name: str, default: int, low: int, high: int | None = None) -> int:
        return self.value(name, default, within(int, low, high),
                          f"an integer {_range_text(low, high)} (default {default})")

    def number(self, name: str, default: float, low: float, high: float) -> float:
        return self.value(name, default, within(float, low, high),
                          f"a number from {low:g} to {high:g} (default {default:g})")

    def seconds(self, name: str, default: float, zero: bool = False) -> float:
        """A finite number of seconds above 0 (or from 0, when `zero`)."""
        def parse(text: str) -> float:
            seconds = float(text)
            if not (0 <= seconds if zero else 0 < seconds) or not math.isfinite(seconds):
                raise ValueError(text)
            return seconds
        return self.value(name, default, parse, f"a number of seconds "
                          f"{'from 0' if zero else 'above 0'} (default {default:g})")

    def port(self, name: str, default: int, high: int = 65535) -> int:
        return self.value(name, default, within(int, 1, high), f"a TCP port (1-{high})")

    def choice(self, name: str, default: str, choices: Sequence[str], meaning: str = "") -> str:
        """One of `choices`, case-insensitively, returned in lower case."""
        def parse(text: str) -> str:
            if text.lower() not in choices:
                raise ValueError(text)
            return text.lower()
        return self.value(name, default, parse,
                          f"one of {', '.join(choices)}{f' ({meaning})' if meaning else ''}")

    def check(self, what: str) -> None:
        """A ClientError naming every problem found so far, e.g. `what`="serving"."""
        if self.problems:
            raise ClientError(f"Invalid {what} environment: " + " ".join(self.problems))


def _range_text(low: float, high: float | None) -> str:
    return f"from {low:g}" if high is None else f"from {low:g} to {high:g}"


def within(kind: Callable[[str], T], low: float, high: float | None = None
           ) -> Callable[[str], T]:
    """`kind(text)`, a ValueError outside [low, high] (NaN included)."""
    def parse(text: str) -> T:
        value = kind(text)
        if not (low <= value and (high is None or value <= high)):  # type: ignore[operator]
            raise ValueError(text)
        return value
    return parse
