"""Flask routes of the SageMaker inference contract: `GET /ping`, `POST /invocations`,
`GET /execution-parameters` (batch transform).

Every refusal is a JSON body `{"error": sentence, "status": code}`: 400 bad image or attribute,
or a malformed or incomplete body, 413 too large, 415 unsupported content type, 406 unsupported
Accept, 408 a body that had not arrived by the request's deadline, 503 work that had not
finished by it (`deadline.py`). A client's mistake never becomes a 500; an unexpected failure
does, logged with its traceback. (Requests gunicorn refuses before they get here: `worker.py`.)
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import (
    ClientDisconnected,
    HTTPException,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
)

from ssd_sagemaker.serving.attributes import CUSTOM_ATTRIBUTES_HEADER, detection_limits
from ssd_sagemaker.serving.batches import BATCH_CONTENT_TYPES, answer_batch
from ssd_sagemaker.serving.config import ServingConfig
from ssd_sagemaker.serving.deadline import ENVIRON_KEY, run_before_deadline
from ssd_sagemaker.serving.negotiation import (
    JSON_LINES,
    batch_line_format,
    response_format,
)
from ssd_sagemaker.serving.pipeline import SUPPORTED_CONTENT_TYPES, detect_in_bytes
from ssd_sagemaker.serving.predictor import Predictor
from ssd_sagemaker.serving.protocol_errors import protocol_refusal
from ssd_sagemaker.serving.request_errors import PayloadTooLarge, RequestError, UnsupportedMediaType

LOG = logging.getLogger(__name__)


def _answer(refusal: RequestError) -> tuple[Response, int]:
    """The refusal's JSON body (the one the worker writes too), with its status."""
    return Response(refusal.body(), mimetype="application/json"), refusal.status


def _too_large(config: ServingConfig, size: int | None = None) -> PayloadTooLarge:
    actual = f"{size} bytes, " if size is not None else ""
    return PayloadTooLarge(f"the request body is {actual}above the limit of "
                           f"{config.max_payload_mb} MB (SAGEMAKER_MAX_PAYLOAD_IN_MB)")


def _ended_early(detail: str) -> RequestError:
    return RequestError(f"the request body ended early: {detail}; send the whole body before "
                        f"closing the connection")


def _read_body(config: ServingConfig) -> bytes:
    """The body, refused before reading when Content-Length is over the limit, and refused
    when the bytes read are (a chunked body has no Content-Length). A chunked body's framing is
    parsed only now, as it is read: malformed framing, or a body shorter than announced, is
    the client's mistake (400), not a failure of ours."""
    declared = request.content_length
    if declared is not None and declared > config.max_payload_bytes:
        raise _too_large(config, declared)
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise _too_large(config) from None
    except ClientDisconnected:
        raise _ended_early("the connection closed before the last chunk arrived") from None
    except Exception as error:  # gunicorn's parser, on the chunked framing
        refusal = protocol_refusal(error)
        if refusal is None:
            raise
        raise refusal from None
    if len(body) > config.max_payload_bytes:
        raise _too_large(config)
    if declared is not None and len(body) < declared:
        raise _ended_early(f"{len(body)} of the {declared} bytes its Content-Length announces "
                           f"arrived")
    return body


def invocation_response(predictor: Predictor, config: ServingConfig) -> Response:
    """The answer to an invocation of `predictor` with this request (`POST /invocations`, and
    `POST /models/NAME/invoke` of a multi-model server): the same checks, refusals and bodies,
    for one image or a batch (`batches.py`, answered in JSON Lines)."""
    mimetype = (request.mimetype or "").lower()
    limits = detection_limits(request.headers.get(CUSTOM_ATTRIBUTES_HEADER), config.limits)
    if mimetype in BATCH_CONTENT_TYPES:
        line_format = batch_line_format(request.headers.get("Accept"), config.default_accept)
        body = _read_body(config)
        clock = request.environ.get(ENVIRON_KEY)
        rendered = run_before_deadline(clock, lambda: answer_batch(
            predictor, mimetype, body, config.max_image_pixels, limits, line_format, clock))
        return Response(rendered, mimetype=JSON_LINES)
    if mimetype not in SUPPORTED_CONTENT_TYPES:
        declared = request.content_type or "no Content-Type"
        raise UnsupportedMediaType(f"Content-Type '{declared}' is not supported; send one "
                                   f"of: {', '.join(SUPPORTED_CONTENT_TYPES)} (one image), "
                                   f"{', '.join(BATCH_CONTENT_TYPES)} (a batch)")
    chosen = response_format(request.headers.get("Accept"), config.default_accept)
    body = _read_body(config)
    clock = request.environ.get(ENVIRON_KEY)
    rendered = run_before_deadline(clock, lambda: detect_in_bytes(
        predictor, body, config.max_image_pixels, limits, clock).render(chosen))
    return Response(rendered, mimetype=chosen.content_type)


def create_app(predictor: Predictor, config: ServingConfig = ServingConfig()) -> Flask:
    """The app for an already-loaded predictor (so /ping is true as soon as it answers)."""
    app = refusing_app(config)

    @app.get("/ping")
    def ping():
        return Response(status=200)

    @app.get("/execution-parameters")
    def execution_parameters():
        return jsonify({"MaxConcurrentTransforms": config.workers, "BatchStrategy": "MultiRecord",
                        "MaxPayloadInMB": config.max_payload_mb})

    @app.post("/invocations")
    def invocations():
        return invocation_response(predictor, config)

    return app


def refusing_app(config: ServingConfig) -> Flask:
    """A Flask app without routes that answers every refusal, unknown route and failure of its
    routes with the one JSON error body (shared by the single- and multi-model apps)."""
    app = Flask("ssd_sagemaker")
    # One byte over the limit: werkzeug stops a chunked body at MAX_CONTENT_LENGTH without
    # always raising, so reading at most limit + 1 bytes lets `_read_body` see it is too long.
    app.config["MAX_CONTENT_LENGTH"] = config.max_payload_bytes + 1

    @app.errorhandler(RequestError)
    def refused(error: RequestError):
        LOG.info("refused %s %s with %d: %s", request.method, request.path, error.status, error)
        return _answer(error)

    @app.errorhandler(NotFound)
    def not_found(error: NotFound):
        routes = ", ".join(
            f"{'/'.join(sorted((rule.methods or set()) - {'HEAD', 'OPTIONS'}))} {rule}"
            for rule in app.url_map.iter_rules() if rule.endpoint != "static")
        return _answer(RequestError(f"{request.path} is not served; the routes are: {routes}",
                                    404))

    @app.errorhandler(MethodNotAllowed)
    def method_not_allowed(error: MethodNotAllowed):
        allowed = sorted(error.valid_methods or ())
        useful = [method for method in allowed if method not in ("HEAD", "OPTIONS")]
        response, status = _answer(RequestError(
            f"{request.method} is not allowed on {request.path}; use {' or '.join(useful)}", 405))
        response.headers["Allow"] = ", ".join(allowed)
        return response, status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return _answer(RequestError(error.description or error.name, error.code or 500))

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        LOG.exception("unexpected error on %s %s", request.method, request.path)
        return _answer(RequestError(f"internal error ({type(error).__name__}); see the server "
                                    f"log", 500))

    return app
