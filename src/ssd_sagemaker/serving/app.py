"""Flask routes of the SageMaker inference contract: `GET /ping`, `POST /invocations`."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request

from ssd_sagemaker.serving.handlers import SUPPORTED_CONTENT_TYPES, Predictor, UndecodableImage

LOG = logging.getLogger(__name__)


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"error": message, "status": status}), status


def create_app(predictor: Predictor) -> Flask:
    """The app for an already-loaded predictor (so /ping is true as soon as it answers)."""
    app = Flask("ssd_sagemaker")

    @app.get("/ping")
    def ping():
        return Response(status=200)

    @app.post("/invocations")
    def invocations():
        content_type = (request.mimetype or "").lower()
        if content_type not in SUPPORTED_CONTENT_TYPES:
            return _error(415, f"Content-Type '{request.content_type}' is not supported; send "
                               f"one of: {', '.join(SUPPORTED_CONTENT_TYPES)}.")
        try:
            return jsonify(predictor.predict_bytes(request.get_data()))
        except UndecodableImage as error:
            return _error(400, f"Cannot read the image: {error}.")

    return app
