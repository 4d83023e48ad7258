"""Run the Flask app under gunicorn on SageMaker's port.

- The master reads the configuration, sets each worker's OpenMP thread budget (cpus // workers)
  before MXNet is first imported (MXNet fixes its thread count at import, and forked workers
  inherit it), checks the artifact, then forks.
- No `--preload`: each worker loads the model after the fork (native runtimes hang when forked
  after loading), before it accepts traffic, so `/ping` answers only once a model is loaded.
- A worker that cannot load the model stops the whole server (gunicorn's worker-boot error), and
  `serve` raises with the worker's reason, rather than a green `/ping` and failing requests.
- Sync workers: a worker takes a connection only when it is idle, so concurrent requests spread
  evenly over the workers (threaded workers accept while busy and queue requests behind a
  running forward while another worker idles). Each request has a deadline below the timeout
  (`deadline.py`): past it, a 408 or 503 answers it before gunicorn would kill the worker. On
  SIGTERM, a worker finishes its request and then answers the connections already waiting in
  the listen queue before it exits (`worker.ServingWorker`).
- A request gunicorn refuses before the app sees it (malformed HTTP, a request line or headers
  over the limits set here) gets the same JSON error body as the app's refusals.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer

from ssd_sagemaker.errors import AlgorithmError, ClientError
from ssd_sagemaker.serving.capacity import serving_capacity
from ssd_sagemaker.serving.config import (
    ServingConfig,
    gpu_count,
    read_serving_config,
)
from ssd_sagemaker.serving.deadline import request_seconds
from ssd_sagemaker.serving.model_server import ModelServer
from ssd_sagemaker.serving.multi_model_server import serve_multi_model
from ssd_sagemaker.variables import MXNET_CUDNN_AUTOTUNE_DEFAULT, OMP_NUM_THREADS

LOG = logging.getLogger(__name__)

# The serving default of cuDNN autotuning (GPU image). MXNet's default, 1, benchmarks every
# convolution algorithm the first time a process sees a shape: requests come in every size (the
# network input is resized to image_shape, but the benchmark is paid again by every gunicorn
# worker, including each replacement after a timeout or crash, on a live request), and the
# trial workspaces take GPU memory while workers share a GPU. 0 takes cuDNN's heuristic choice
# at once. Training keeps 1: one shape for hours repays the benchmark. Not measured: no GPU here.
SERVING_CUDNN_AUTOTUNE = "0"


def _apply_thread_budget(config: ServingConfig) -> None:
    """OpenMP threads per worker, in the environment MXNet reads when it is first imported;
    cuDNN autotuning off unless set (`SERVING_CUDNN_AUTOTUNE`)."""
    if "mxnet" in sys.modules:
        LOG.warning("MXNet was imported before the server set OMP_NUM_THREADS=%d; workers keep "
                    "MXNet's own thread count", config.omp_threads)
    os.environ[OMP_NUM_THREADS] = str(config.omp_threads)
    os.environ.setdefault(MXNET_CUDNN_AUTOTUNE_DEFAULT, SERVING_CUDNN_AUTOTUNE)


def serve(model_dir: Path, environ: Mapping[str, str] = os.environ) -> None:
    """Check the configuration and the artifact (refuse to start on a bad one), then run
    gunicorn until stopped. Raises ClientError when a worker cannot load the model."""
    gpus = gpu_count(environ)
    # Every bad variable is named at once before the capacity (which needs the pixel limit)
    # sizes the workers; the second read only fills in the sized defaults.
    checked = read_serving_config(environ, gpus=gpus)
    capacity = serving_capacity(model_dir, checked.max_image_pixels, gpus)
    config = read_serving_config(environ, cpus=capacity.cpus, gpus=gpus,
                                 default_workers=capacity.workers)
    logging.getLogger().setLevel(config.log_level)  # SAGEMAKER_CONTAINER_LOG_LEVEL
    LOG.info("%s", capacity.describe())
    if config.workers > max(1, capacity.by_memory):
        LOG.warning("SAGEMAKER_MODEL_SERVER_WORKERS=%d: more workers than the %d that fit in "
                    "%.0f MB; a burst of requests may get one killed for memory",
                    config.workers, capacity.by_memory, capacity.memory_mb)
    _apply_thread_budget(config)
    if config.multi_model:
        serve_multi_model(config)
        return
    from ssd_sagemaker.serving.precision import resolve_inference_precision
    from ssd_sagemaker.serving.preflight import check_artifact  # imports MXNet

    info = check_artifact(model_dir)
    precision = resolve_inference_precision(config.precision, info, model_dir, gpus=gpus)
    if precision == "int8":
        check_artifact(model_dir, int8=True)
    LOG.info("serving %s SSD (%d classes, %d px, %s) from %s on %s: %d workers x %d OpenMP "
             "threads, timeout %d s (%g s per request), payload limit %d MB", info.base_network,
             info.num_classes, info.image_shape, precision, model_dir, config.bind,
             config.workers, config.omp_threads, config.timeout,
             request_seconds(config.timeout), config.max_payload_mb)
    handle, name = tempfile.mkstemp(prefix="ssd-serve-boot-failure-")
    os.close(handle)
    boot_failure_file = Path(name)
    master = os.getpid()
    try:
        ModelServer(model_dir, config, boot_failure_file, precision).run()
    except (SystemExit, HaltServer) as stop:
        # Workers leave gunicorn by SystemExit through this same frame: only the master reports.
        # HaltServer escapes gunicorn when a second worker fails to boot while it halts.
        code = stop.code if isinstance(stop, SystemExit) else stop.exit_status
        if os.getpid() != master or code != Arbiter.WORKER_BOOT_ERROR:
            raise
        reason = boot_failure_file.read_text(encoding="utf-8").strip()
        if reason:
            raise ClientError(reason) from None
        raise AlgorithmError("a gunicorn worker failed to boot; its traceback is in the log "
                             "above") from None
    finally:
        if os.getpid() == master:
            boot_failure_file.unlink(missing_ok=True)
