"""Serving settings from the environment, read once in the gunicorn master and passed down typed.

Every knob SageMaker (or the user) can turn is validated here, all problems reported at once, so
a bad value stops `serve` before a worker starts instead of failing requests later. Nothing here
imports MXNet: the master must set the OpenMP thread count before MXNet is first imported.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ssd_sagemaker.serving.negotiation import JSON_LINES, response_format
from ssd_sagemaker.serving.request_errors import NotAcceptable
from ssd_sagemaker.variables import (
    CUDA_VISIBLE_DEVICES,
    OMP_NUM_THREADS,
    SAGEMAKER_BIND_TO_PORT,
    SAGEMAKER_CONTAINER_LOG_LEVEL,
    SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT,
    SAGEMAKER_MAX_PAYLOAD_IN_MB,
    SAGEMAKER_MODEL_SERVER_TIMEOUT,
    SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS,
    SAGEMAKER_MODEL_SERVER_WORKERS,
    SAGEMAKER_MULTI_MODEL,
    SSD_DRAW_THRESHOLD,
    SSD_INFERENCE_PRECISION,
    SSD_MAX_DETECTIONS,
    SSD_MAX_IMAGE_PIXELS,
    SSD_MAX_TILES,
    SSD_MME_MEMORY_LIMIT_MB,
    SSD_SCORE_THRESHOLD,
    SSD_TILE,
    SSD_TILE_OVERLAP,
    VariableReader,
    within,
)

DEFAULT_PORT = 8080
DEFAULT_TIMEOUT_SECONDS = 60
DEFAULT_MAX_PAYLOAD_MB = 6
MAX_PAYLOAD_MB_LIMIT = 100  # SageMaker's ceiling for MaxPayloadInMB
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
DEFAULT_SCORE_THRESHOLD = 0.0
DEFAULT_MAX_DETECTIONS = 100
DEFAULT_DRAW_THRESHOLD = 0.5  # a drawn image shows what a person should look at, not all 100
DEFAULT_TILE_OVERLAP = 0.25  # of a tile: objects up to a quarter tile are whole in some tile
# Tiles per image. Time is bounded by the request's deadline (checked between batches of
# tiles); this bounds the rest: the rows held and merged (up to 100 a tile; merging 256 tiles'
# rows takes well under a forward, serving/tiling.py) and absurd requests (32-px tiles at
# overlap 0.9 on a 40 MP image are 1.6 million tiles). 256 accepts the recipe, 300-px
# tiles at half overlap on the 5x5 demo mosaic (1975x1585: 130 tiles), and 2400x2400 (225).
DEFAULT_MAX_TILES = 256
MAX_TILES_CEILING = 10_000
MEGABYTE = 1024 * 1024
INFERENCE_PRECISIONS = ("float32", "bfloat16", "int8", "auto")  # serving/precision.py


@dataclass(frozen=True)
class DetectionLimits:
    """Which detections a response keeps: score at least `score_threshold`, at most
    `max_detections` of the best (the defaults keep everything the network returns, as the
    built-in algorithm does); a drawn image shows those scoring at least `draw_threshold`.
    `tile` > 0 finds them in tiles of that many pixels overlapping by `tile_overlap`
    (serving/tiling.py); 0 looks at the whole image at once, as the built-in does."""

    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    max_detections: int = DEFAULT_MAX_DETECTIONS
    draw_threshold: float = DEFAULT_DRAW_THRESHOLD
    tile: int = 0
    tile_overlap: float = DEFAULT_TILE_OVERLAP
    # The server's bound (SSD_MAX_TILES), not a request attribute: a client cannot raise it.
    max_tiles: int = DEFAULT_MAX_TILES

    def overridden(self, texts: Mapping[str, str]) -> DetectionLimits:
        """These limits with those `texts` names (limit → text: a request's custom attribute,
        a command-line option) parsed and put in; a ValueError names a bad one."""
        changes: dict[str, Any] = {name: parse_limit(name, text) for name, text in texts.items()}
        return replace(self, **changes)


@dataclass(frozen=True)
class ServingConfig:
    """What the server, the app and the workers need, validated."""

    port: int = DEFAULT_PORT
    workers: int = 1
    timeout: int = DEFAULT_TIMEOUT_SECONDS
    max_payload_mb: int = DEFAULT_MAX_PAYLOAD_MB
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    limits: DetectionLimits = DetectionLimits()
    omp_threads: int = 1
    precision: str = "float32"  # as requested (SSD_INFERENCE_PRECISION); serve checks it
    multi_model: bool = False  # SAGEMAKER_MULTI_MODEL: the /models contract (multi_model.py)
    memory_limit_mb: int | None = None  # SSD_MME_MEMORY_LIMIT_MB: a cap below the cgroup's
    default_accept: str = ""  # SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT: for requests without Accept
    log_level: int = logging.INFO  # SAGEMAKER_CONTAINER_LOG_LEVEL

    @property
    def bind(self) -> str:
        return f"0.0.0.0:{self.port}"

    @property
    def max_payload_bytes(self) -> int:
        return self.max_payload_mb * MEGABYTE


def cpu_count() -> int:
    """CPUs this process may run on (respects affinity/cpusets, unlike `os.cpu_count`)."""
    return len(os.sched_getaffinity(0)) or 1


def gpu_count(environ: Mapping[str, str]) -> int:
    """GPUs visible to this container, counted without CUDA: initialising CUDA in the gunicorn
    master (as `mx.context.num_gpus()` does) would break CUDA in every forked worker."""
    visible = environ.get(CUDA_VISIBLE_DEVICES)
    if visible is not None:
        ids = [i.strip() for i in visible.split(",") if i.strip()]
        return 0 if not ids or ids[0].startswith("-") else len(ids)
    driver = Path("/proc/driver/nvidia/gpus")
    return sum(1 for _ in driver.iterdir()) if driver.is_dir() else 0


# Each detection limit's environment variable: its default for the whole server.
LIMIT_VARIABLES = {"score_threshold": SSD_SCORE_THRESHOLD, "max_detections": SSD_MAX_DETECTIONS,
                   "draw_threshold": SSD_DRAW_THRESHOLD, "tile": SSD_TILE,
                   "tile_overlap": SSD_TILE_OVERLAP}
MIN_TILE, MAX_TILE = 32, 8192


def _tile_size(text: str) -> int:
    """0 (no tiling) or a tile side in [MIN_TILE, MAX_TILE]; a ValueError otherwise."""
    size = int(text)
    return size if size == 0 else within(int, MIN_TILE, MAX_TILE)(text)


LIMIT_PARSERS: dict[str, tuple[Callable[[str], float], str]] = {
    "score_threshold": (within(float, 0.0, 1.0), "a number from 0 to 1"),
    "max_detections": (within(int, 1), "an int > 0"),
    "draw_threshold": (within(float, 0.0, 1.0), "a number from 0 to 1"),
    "tile": (_tile_size,
             f"0 (the whole image) or a tile size from {MIN_TILE} to {MAX_TILE} pixels"),
    "tile_overlap": (within(float, 0.0, 0.9), "a fraction of a tile from 0 to 0.9"),
}
# A custom attribute's short name for a limit (`tile=512,overlap=0.25`).
LIMIT_ATTRIBUTES = {"overlap": "tile_overlap"}


def parse_limit(name: str, raw: str) -> float:
    """One detection limit (`score_threshold`, `max_detections`, `draw_threshold`) from text,
    wherever it comes
    from (environment, request attribute, command line); a ValueError names the limit, the value
    and what is expected."""
    parse, expected = LIMIT_PARSERS[name]
    try:
        return parse(raw.strip())
    except ValueError:
        raise ValueError(f"{name}={raw.strip()!r} is invalid: expected {expected}") from None


def read_request_limits(environ: Mapping[str, str] = os.environ
                        ) -> tuple[int, DetectionLimits]:
    """What `predict` shares with the endpoint, from the same variables: the pixel limit
    (`SSD_MAX_IMAGE_PIXELS`) and the default detection limits (`SSD_SCORE_THRESHOLD`,
    `SSD_MAX_DETECTIONS`, `SSD_DRAW_THRESHOLD`, `SSD_TILE`, `SSD_TILE_OVERLAP`,
    `SSD_MAX_TILES`); a ClientError names every bad one."""
    reader = VariableReader(environ)
    pixels, limits = _max_image_pixels(reader), _detection_limits(reader)
    reader.check("serving")
    return pixels, limits


def read_serving_config(environ: Mapping[str, str] = os.environ, cpus: int | None = None,
                        gpus: int | None = None, default_workers: int | None = None
                        ) -> ServingConfig:
    """The whole serving configuration; a ClientError names every bad variable.

    Workers default to `default_workers` (`serve` sizes it to the container's CPUs and memory:
    `capacity.py`), else one per GPU, else one per CPU. Each worker gets cpus // workers OpenMP
    threads (unless `OMP_NUM_THREADS` is set) so that workers do not fight over cores."""
    cpus = cpu_count() if cpus is None else cpus
    gpus = gpu_count(environ) if gpus is None else gpus
    reader = VariableReader(environ)
    port = reader.port(SAGEMAKER_BIND_TO_PORT, DEFAULT_PORT)
    workers = reader.integer(SAGEMAKER_MODEL_SERVER_WORKERS, default_workers or gpus or cpus, 1)
    timeout = _timeout(reader)
    # 0 is SageMaker's "no limit" (streamed payloads); images still need a bound: the maximum.
    payload = reader.integer(SAGEMAKER_MAX_PAYLOAD_IN_MB, DEFAULT_MAX_PAYLOAD_MB, 0,
                             MAX_PAYLOAD_MB_LIMIT)
    pixels, limits = _max_image_pixels(reader), _detection_limits(reader)
    threads = reader.integer(OMP_NUM_THREADS, max(1, cpus // workers), 1)
    precision = _inference_precision(reader)
    multi_model = reader.choice(SAGEMAKER_MULTI_MODEL, "false", ("true", "false")) == "true"
    memory_limit: int | None = reader.value(SSD_MME_MEMORY_LIMIT_MB, None, within(int, 1),
                                            "a number of megabytes above 0 (default: none)")
    default_accept = reader.value(SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, "", _default_accept,
                                  "a response type this server answers (application/json, "
                                  "application/json;verbose, application/json;annotation=1, "
                                  "image/jpeg, image/png, application/jsonlines)")
    log_level = reader.value(SAGEMAKER_CONTAINER_LOG_LEVEL, logging.INFO, parse_log_level,
                             "a log level: a name (DEBUG, INFO, WARNING, ERROR, CRITICAL) or "
                             "its number (10, 20, 30, 40, 50)")
    reader.check("serving")
    return ServingConfig(port=port, workers=workers, timeout=timeout,
                         max_payload_mb=payload or MAX_PAYLOAD_MB_LIMIT, max_image_pixels=pixels,
                         limits=limits, omp_threads=threads, precision=precision,
                         multi_model=multi_model, memory_limit_mb=memory_limit,
                         default_accept=default_accept, log_level=log_level)


def _timeout(reader: VariableReader) -> int:
    """`SAGEMAKER_MODEL_SERVER_TIMEOUT`, or its alias `SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS`
    (the inference toolkit's name); both set to different values is refused."""
    timeout = reader.integer(SAGEMAKER_MODEL_SERVER_TIMEOUT, DEFAULT_TIMEOUT_SECONDS, 1)
    alias = reader.integer(SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS, timeout, 1)
    if (reader.environ.get(SAGEMAKER_MODEL_SERVER_TIMEOUT) or "").strip() and alias != timeout:
        reader.problems.append(f"{SAGEMAKER_MODEL_SERVER_TIMEOUT}={timeout} and "
                               f"{SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS}={alias} disagree; set "
                               f"one of them.")
    return alias


def _default_accept(text: str) -> str:
    """A response type some request can be answered with (checked as a request's Accept)."""
    if text.split(";")[0].strip().lower() == JSON_LINES:
        return text
    try:
        response_format(text)
    except NotAcceptable:
        raise ValueError(text) from None
    return text


LOG_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
              "WARN": logging.WARNING, "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL}


def parse_log_level(text: str) -> int:
    """A level name (any case) or a number from 0 to 50 (the SDK's `container_log_level` sends
    `logging.INFO` as "20")."""
    if text.upper() in LOG_LEVELS:
        return LOG_LEVELS[text.upper()]
    return within(int, 0, logging.CRITICAL)(text)


def read_inference_precision(environ: Mapping[str, str] = os.environ) -> str:
    """`SSD_INFERENCE_PRECISION` as requested (what `predict` shares with the endpoint); a
    ClientError for a value that is none of INFERENCE_PRECISIONS."""
    reader = VariableReader(environ)
    precision = _inference_precision(reader)
    reader.check("serving")
    return precision


def _inference_precision(reader: VariableReader) -> str:
    return reader.choice(SSD_INFERENCE_PRECISION, "float32", INFERENCE_PRECISIONS)


def _max_image_pixels(reader: VariableReader) -> int:
    return reader.integer(SSD_MAX_IMAGE_PIXELS, DEFAULT_MAX_IMAGE_PIXELS, 1)


def _detection_limits(reader: VariableReader) -> DetectionLimits:
    """The default limits, each overridden by its variable (`LIMIT_VARIABLES`)."""
    values = {name: reader.value(variable, getattr(DetectionLimits, name),
                                 LIMIT_PARSERS[name][0], LIMIT_PARSERS[name][1])
              for name, variable in LIMIT_VARIABLES.items()}
    max_tiles = reader.integer(SSD_MAX_TILES, DEFAULT_MAX_TILES, 1, MAX_TILES_CEILING)
    return DetectionLimits(**values, max_tiles=max_tiles)
