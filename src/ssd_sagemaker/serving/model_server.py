"""The gunicorn application of one model server: gunicorn's options from the serving
configuration (limits, timeouts, the worker class), and the master and worker hooks that give
each worker its device and load the model after the fork. `server.serve` runs it for one model;
`multi_model_server` extends it for many."""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.serving.config import (
    LOG_LEVELS,
    ServingConfig,
)
from ssd_sagemaker.serving.protocol_errors import (
    MAX_HEADER_FIELD_BYTES,
    MAX_HEADER_FIELDS,
    MAX_REQUEST_LINE_BYTES,
)
from ssd_sagemaker.serving.worker import ServingWorker

LOG = logging.getLogger(__name__)

GRACEFUL_TIMEOUT_SECONDS = 25  # SageMaker sends SIGKILL about 30 s after SIGTERM


def gunicorn_options(config: ServingConfig) -> dict:
    """gunicorn settings for a configuration."""
    return {
        "bind": config.bind,
        "workers": config.workers,
        "worker_class": ServingWorker,
        "timeout": config.timeout,
        "graceful_timeout": GRACEFUL_TIMEOUT_SECONDS,
        "preload_app": False,
        "accesslog": "-" if config.log_level <= logging.INFO else None,  # access lines: INFO
        "loglevel": logging.getLevelName(config.log_level).lower()
        if config.log_level in LOG_LEVELS.values() else "debug",
        "limit_request_line": MAX_REQUEST_LINE_BYTES,
        "limit_request_fields": MAX_HEADER_FIELDS,
        "limit_request_field_size": MAX_HEADER_FIELD_BYTES,
    }


def free_device_slot(used: set[int]) -> int:
    """The lowest slot no live worker holds, so a replaced worker takes its predecessor's GPU."""
    return next(slot for slot in itertools.count() if slot not in used)


class ModelServer(BaseApplication):
    """gunicorn application whose workers each build the predictor in `load()` (post-fork)."""

    def __init__(self, model_dir: Path, config: ServingConfig, boot_failure_file: Path,
                 precision: str = "float32"):
        self._model_dir = model_dir
        self._config = config
        self._precision = precision  # resolved and checked by `serve`
        self._boot_failure_file = boot_failure_file
        self._device_slot = 0
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self._config).items():
            self.cfg.set(key, value)
        if "control_socket_disable" in self.cfg.settings:
            # Recent gunicorn opens a control socket under $HOME; a container needs none, and
            # servers sharing a HOME (tests, several models on one host) would collide on it.
            self.cfg.set("control_socket_disable", True)
        self.cfg.set("pre_fork", self._pre_fork)
        self.cfg.set("post_fork", self._post_fork)

    def _pre_fork(self, arbiter, worker) -> None:
        """In the master: give the new worker a device slot (its GPU, when there are GPUs)."""
        used = {getattr(w, "device_slot", 0) for w in arbiter.WORKERS.values()}
        worker.device_slot = free_device_slot(used)

    def _post_fork(self, arbiter, worker) -> None:
        """In the worker, before `load()`."""
        self._device_slot = worker.device_slot

    def context(self):
        """This worker's device (its slot's GPU, or the CPU)."""
        from ssd_sagemaker.devices import available_contexts

        contexts = available_contexts()
        return contexts[self._device_slot % len(contexts)]

    def load(self):
        from ssd_sagemaker.serving.app import create_app
        from ssd_sagemaker.serving.predictor import Predictor

        context = self.context()
        try:
            predictor = Predictor(self._model_dir, context, self._precision)
        except ClientError as error:
            # Tell the master why, and exit with gunicorn's boot-error code: the arbiter then
            # stops every worker and exits instead of respawning workers that cannot work.
            self._boot_failure_file.write_text(str(error), encoding="utf-8",
                                              errors="backslashreplace")
            LOG.error("worker %d cannot load the model: %s", os.getpid(), error)
            raise SystemExit(Arbiter.WORKER_BOOT_ERROR) from None
        LOG.info("worker %d loaded the %s model on %s", os.getpid(), self._precision, context)
        return create_app(predictor, self._config)


