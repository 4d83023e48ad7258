"""The routes of a multi-model server (`SAGEMAKER_MULTI_MODEL=true`): SageMaker's contract for
custom containers serving many models on one CPU endpoint.

- `POST /models` `{"model_name": NAME, "url": FOLDER}`: checks the artifact in FOLDER as `serve`
  checks `/opt/ml/model` (400 naming what is wrong), checks it fits in memory (507: SageMaker
  unloads the least recently used model and retries), loads it and runs one forward; 200 once
  it answered, 409 when NAME is taken.
- `GET /models` (`max_results`, `next_page_token`), `GET /models/NAME` (with the classes, base
  network, input size and precision), `DELETE /models/NAME` (404 after).
- `POST /models/NAME/invoke`: what `POST /invocations` answers for that model (`app.py`).
- `GET /ping`: 200 while the worker can read the set of models.

Which worker answers does not matter: the set of models is shared (`model_registry.py`) and
each worker loads its own copy when it first needs one (`loaded_models.py`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np
from flask import Flask, Response, jsonify, request

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.artifact import PARAMS_FILE, ModelInfo
from ssd_sagemaker.serving.app import invocation_response, refusing_app
from ssd_sagemaker.serving.config import ServingConfig
from ssd_sagemaker.serving.deadline import ENVIRON_KEY, run_before_deadline
from ssd_sagemaker.serving.loaded_models import LoadedModels, prune_continually
from ssd_sagemaker.serving.memory_budget import check_fits, model_bytes
from ssd_sagemaker.serving.model_registry import ModelEntry, ModelRegistry
from ssd_sagemaker.serving.precision import resolve_inference_precision
from ssd_sagemaker.serving.predictor import Predictor
from ssd_sagemaker.serving.preflight import check_artifact
from ssd_sagemaker.serving.request_errors import RequestError

LOG = logging.getLogger(__name__)

TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"  # InvokeEndpoint's TargetModel, for logs
DEFAULT_MAX_RESULTS = 100
MAX_NAME_CHARACTERS = 1024


class ArtifactRefused(RequestError):
    """`POST /models` of a folder that is not a servable artifact (400, naming what is wrong)."""


class ModelUnavailable(RequestError):
    """A loaded model this worker cannot load its own copy of (its folder changed since)."""

    status = 503


def describe(info: ModelInfo, precision: str) -> dict[str, Any]:
    """What `GET /models/NAME` tells besides the name and folder."""
    return {"classes": list(info.classes), "baseNetwork": info.base_network,
            "inputSize": info.image_shape, "precision": precision}


def _load_request() -> tuple[str, str]:
    """`model_name` and `url` of a `POST /models` body; a 400 naming what is missing."""
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise RequestError('the body is not a JSON object; send {"model_name": NAME, "url": '
                           'FOLDER} (FOLDER: where the model.tar.gz was extracted)')
    name, url = body.get("model_name"), body.get("url")
    problems = []
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARACTERS \
            or "/" in name or not name.isprintable():
        problems.append(f"model_name must be a name of 1 to {MAX_NAME_CHARACTERS} printable "
                        f"characters without '/' (given {str(name)[:80]!r})")
    if not isinstance(url, str) or not url.startswith("/"):
        problems.append(f"url must be the absolute path of the model's folder (given "
                        f"{str(url)[:200]!r})")
    if problems:
        raise RequestError("; ".join(problems))
    return str(name), str(url)


def _max_results(text: str | None) -> int:
    if text is None:
        return DEFAULT_MAX_RESULTS
    if not text.isdigit() or int(text) < 1:
        raise RequestError(f"max_results={text[:40]!r} is invalid: expected an integer above 0")
    return int(text)


def model_page(entries: list[ModelEntry], max_results: int, after: str | None
               ) -> dict[str, Any]:
    """A page of `GET /models`: the models named after `after` (the previous page's token),
    and the token of the next page when there is one."""
    rest = [entry for entry in entries if after is None or entry.name > after]
    page = rest[:max_results]
    answer: dict[str, Any] = {"models": [entry.listed() for entry in page]}
    if len(rest) > max_results:
        answer["nextPageToken"] = page[-1].name
    return answer


def create_multi_model_app(config: ServingConfig, registry: ModelRegistry, context: mx.Context,
                           gpus: int = 0) -> Flask:
    """The multi-model app of one worker, whose models run on `context`."""
    app = refusing_app(config)

    def load_copy(entry: ModelEntry) -> Predictor:
        try:
            predictor = Predictor(Path(entry.url), context, entry.description["precision"])
        except ClientError as error:
            raise ModelUnavailable(f"model '{entry.name}' cannot be loaded by this worker: "
                                   f"{error}") from None
        registry.add_holder(entry)
        return predictor

    models = LoadedModels(load_copy)
    prune_continually(models, registry)

    def load(name: str, folder: Path) -> tuple[Predictor, dict[str, Any], int]:
        """Check, budget, load and run the model once; a RequestError says why not."""
        try:
            info = check_artifact(folder)
            precision = resolve_inference_precision(config.precision, info, folder, gpus)
            if precision == "int8":
                check_artifact(folder, int8=True)
            check_fits(name, folder / PARAMS_FILE, config.workers, config.memory_limit_mb,
                       registry.unloaded_bytes(config.workers))
            predictor = Predictor(folder, context, precision)  # what only MXNet can tell
        except ClientError as error:
            raise ArtifactRefused(f"model '{name}' cannot be loaded from {folder}: {error}") \
                from None
        size = info.image_shape
        predictor.detect(np.zeros((size, size, 3), dtype=np.uint8))  # it answers
        return predictor, describe(info, precision), model_bytes(folder / PARAMS_FILE)

    @app.get("/ping")
    def ping():
        registry.models()  # the shared set is readable: this worker can load and answer
        return Response(status=200)

    @app.post("/models")
    def load_model():
        name, url = _load_request()
        entry = registry.reserve(name, url)
        try:
            predictor, description, copy_bytes = run_before_deadline(
                request.environ.get(ENVIRON_KEY), lambda: load(name, Path(url)))
        except BaseException:
            registry.release(entry)
            raise
        models.keep(registry.publish(entry, description, copy_bytes), predictor)
        LOG.info("worker %d loaded model '%s' from %s (%s)", os.getpid(), name, url, description)
        return jsonify({"status": f"model '{name}' loaded"})

    @app.get("/models")
    def list_models():
        after = request.args.get("next_page_token") or None
        return jsonify(model_page(registry.models(), _max_results(request.args.get(
            "max_results")), after))

    @app.get("/models/<name>")
    def describe_model(name: str):
        entry = registry.ready(name)
        return jsonify({**entry.listed(), **entry.description})

    @app.delete("/models/<name>")
    def unload_model(name: str):
        registry.remove(name)
        models.prune(registry.models())
        LOG.info("worker %d unloaded model '%s'", os.getpid(), name)
        return jsonify({"status": f"model '{name}' unloaded"})

    @app.post("/models/<name>/invoke")
    def invoke(name: str):
        entry = registry.ready(name)
        LOG.debug("invoking '%s' (target model %s)", name,
                  request.headers.get(TARGET_MODEL_HEADER, "not given"))
        predictor = run_before_deadline(request.environ.get(ENVIRON_KEY),
                                        lambda: models.predictor(entry))
        return invocation_response(predictor, config)

    return app
