"""The one refusal type of serving: a request the server refuses, with its HTTP status and a
sentence for the caller (what was wrong, what to send), and the one JSON body every refusal is
answered with — by the Flask app and by the gunicorn worker writing straight to the socket (as
the inference toolkit's `BaseInferenceToolkitError(status, message)`). Never a 500 for the
client's bytes."""

from __future__ import annotations

import json
from http import HTTPStatus


class RequestError(Exception):
    """A request the server refuses: `status` (the class's default, or given) and the message.
    The named subclasses below say which refusal it is where code raises or catches one."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    @property
    def reason(self) -> str:
        """The status line's reason phrase."""
        return HTTPStatus(self.status).phrase

    def body(self) -> bytes:
        """The documented error body, `{"error": sentence, "status": code}`, as JSON bytes."""
        sentence = self.message if self.message.endswith(".") else f"{self.message}."
        return json.dumps({"error": sentence, "status": self.status},
                          separators=(",", ":")).encode("utf-8")


class UndecodableImage(RequestError, ValueError):
    """The body is not a complete, decodable JPEG or PNG (400)."""


class InvalidAttribute(RequestError, ValueError):
    """A known custom attribute has a value we cannot use (400)."""


class PayloadTooLarge(RequestError):
    """The body, or the image it holds, is larger than the configured limit (413)."""

    status = 413


class NotAcceptable(RequestError):
    """No response type the client accepts can be produced (406)."""

    status = 406


class UnsupportedMediaType(RequestError):
    """The request's content type, or the image format in the body, is not served (415)."""

    status = 415
