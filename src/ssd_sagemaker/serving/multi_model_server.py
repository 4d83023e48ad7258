"""`serve` with `SAGEMAKER_MULTI_MODEL=true`: gunicorn workers answering SageMaker's multi-model
contract (`multi_model.py`) instead of serving `/opt/ml/model`. No model is loaded at start
(SageMaker loads them with `POST /models`), so `/ping` is green as soon as a worker is up. The
master makes the folder the workers share the set of models in (`model_registry.py`), private
to this server, and removes it when the server stops."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from ssd_sagemaker.serving.config import ServingConfig, gpu_count
from ssd_sagemaker.serving.deadline import request_seconds
from ssd_sagemaker.serving.model_server import ModelServer

LOG = logging.getLogger(__name__)


class MultiModelServer(ModelServer):
    """The gunicorn application whose workers each build the multi-model app (post-fork)."""

    def __init__(self, config: ServingConfig, registry_folder: Path):
        self._registry_folder = registry_folder
        super().__init__(registry_folder, config, registry_folder / "boot-failure")

    def load(self):
        from ssd_sagemaker.serving.model_registry import ModelRegistry
        from ssd_sagemaker.serving.multi_model import create_multi_model_app

        LOG.info("worker %d serves the multi-model contract", os.getpid())
        return create_multi_model_app(self._config, ModelRegistry(self._registry_folder),
                                      self.context(), gpus=gpu_count(os.environ))


def serve_multi_model(config: ServingConfig) -> None:
    """Run the multi-model server until stopped."""
    folder = Path(tempfile.mkdtemp(prefix="ssd-models-"))
    master = os.getpid()
    LOG.info("serving the multi-model contract (POST /models) on %s: %d workers x %d OpenMP "
             "threads, timeout %d s (%g s per request), payload limit %d MB, model set in %s",
             config.bind, config.workers, config.omp_threads, config.timeout,
             request_seconds(config.timeout), config.max_payload_mb, folder)
    try:
        MultiModelServer(config, folder).run()
    finally:
        if os.getpid() == master:
            shutil.rmtree(folder, ignore_errors=True)
