"""Run the Flask app under gunicorn on SageMaker's port. Each worker loads the model after the
fork (no `--preload`: native runtimes hang when forked after loading) before it accepts traffic."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

from gunicorn.app.base import BaseApplication

from ssd_sagemaker.model.artifact import read_model_info

LOG = logging.getLogger(__name__)

DEFAULT_PORT = 8080


def bind_address(environ: Mapping[str, str]) -> str:
    """`0.0.0.0:8080`, or the port SageMaker gives in `SAGEMAKER_BIND_TO_PORT`."""
    return f"0.0.0.0:{environ.get('SAGEMAKER_BIND_TO_PORT') or DEFAULT_PORT}"


def worker_count(environ: Mapping[str, str]) -> int:
    """`SAGEMAKER_MODEL_SERVER_WORKERS`, else one worker."""
    return int(environ.get("SAGEMAKER_MODEL_SERVER_WORKERS") or 1)


class ModelServer(BaseApplication):
    """gunicorn application whose workers each build the predictor in `load()` (post-fork)."""

    def __init__(self, model_dir: Path, options: dict):
        self._model_dir = model_dir
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        from ssd_sagemaker.serving.app import create_app
        from ssd_sagemaker.serving.handlers import Predictor

        return create_app(Predictor(self._model_dir))


def serve(model_dir: Path, environ: Mapping[str, str] | None = None) -> None:
    """Check the artifact (refuse to start on a broken one), then run gunicorn until stopped."""
    environ = os.environ if environ is None else environ
    info = read_model_info(model_dir)
    LOG.info("serving %s SSD (%d classes, %d px) from %s", info.base_network, info.num_classes,
             info.image_shape, model_dir)
    ModelServer(model_dir, {
        "bind": bind_address(environ),
        "workers": worker_count(environ),
        "timeout": int(environ.get("SAGEMAKER_MODEL_SERVER_TIMEOUT") or 60),
        "graceful_timeout": 25,
        "preload_app": False,
        "accesslog": "-",
    }).run()
