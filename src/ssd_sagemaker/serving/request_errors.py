"""The client's mistakes, each with its HTTP status, so the app answers them with a JSON body
instead of a 500. The message is for the caller: it says what was wrong and what to send."""

from __future__ import annotations


class RequestError(Exception):
    """A request the server refuses; `status` is the HTTP status it is answered with."""

    status = 400


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
