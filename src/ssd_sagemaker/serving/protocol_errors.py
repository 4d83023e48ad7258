"""Requests that break HTTP itself (request line, headers, framing), as gunicorn's parser reports
them: the status and the sentence the client gets, in the same JSON body as every other refusal.

gunicorn finds most of these before the app runs (its worker answers them, see `worker.py`);
a chunked body's framing is parsed only while the app reads it (`app._read_body`). Both ask
`protocol_refusal` here, so a malformed request gets the same answer wherever it is found.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gunicorn.http import errors as http_errors

from ssd_sagemaker.serving.request_errors import RequestError

# The request limits the server sets in gunicorn (its defaults), named in the refusals.
MAX_REQUEST_LINE_BYTES = 4094
MAX_HEADER_FIELDS = 100
MAX_HEADER_FIELD_BYTES = 8190

CHUNKED_FORMAT = ("send each chunk as '<size in hex>\\r\\n<data>\\r\\n' and end the body with "
                  "'0\\r\\n\\r\\n'")


class ClientIdle(Exception):
    """Nothing arrived from the client for `seconds` while its request was being read (a
    stalled or deliberately slow client holding a worker)."""

    def __init__(self, seconds: float):
        super().__init__(f"nothing arrived for {seconds:g} s")
        self.seconds = seconds


class ClientTooSlow(Exception):
    """The request had not all arrived when its deadline (`deadline.py`) passed, however
    regularly bytes came (a slow-drip client holding a worker)."""

    def __init__(self, seconds: float):
        super().__init__(f"it had not all arrived after {seconds:g} s, the time a request may "
                         f"take")
        self.seconds = seconds


def _text(value: object) -> str:
    """A value gunicorn kept as bytes or text, as text (for a message)."""
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _header_message(error: http_errors.InvalidHeader) -> str:
    if error.hdr == "CONTENT-LENGTH":
        return ("the Content-Length header is invalid: send it once, as a decimal number of "
                "bytes, and never together with Transfer-Encoding")
    if error.hdr == "TRANSFER-ENCODING":
        return ("the Transfer-Encoding header is invalid: send 'chunked' once, last, on "
                "HTTP/1.1 (and no Content-Length), or no Transfer-Encoding")
    return (f"a header is invalid ({error}): send 'Name: value' lines ending in \\r\\n, values "
            f"without control characters, Host and Content-Type once")


def _missing_terminator_message(error: http_errors.ChunkMissingTerminator) -> str:
    found = f"found {_text(error.term)!r}" if error.term else "the body ended"
    return (f"the chunked body is malformed: a chunk is not followed by \\r\\n ({found}); "
            f"{CHUNKED_FORMAT}")


# gunicorn's parse errors, most specific first: the status gunicorn answers each with, and what
# the client is told. (gunicorn's own `Worker.handle_error` holds the same statuses.)
_REFUSALS: tuple[tuple[type, int, Callable[[Any], str]], ...] = (
    (http_errors.InvalidRequestLine, 400, lambda e: (
        f"the request line is malformed ({e}): send 'METHOD /path HTTP/1.1' with the path in "
        f"printable ASCII (percent-encode the rest) and lines ending in \\r\\n")),
    (http_errors.InvalidRequestMethod, 400,
     lambda e: f"{e.method!r} is not an HTTP method: send GET or POST"),
    (http_errors.InvalidHTTPVersion, 400,
     lambda e: f"the HTTP version is not served ({e}): send HTTP/1.1"),
    (http_errors.InvalidHeaderName, 400, lambda e: (
        f"the header name {e.hdr!r} is invalid: use letters, digits and '-' (no '_', spaces "
        f"or control characters)")),
    (http_errors.InvalidHeader, 400, _header_message),
    (http_errors.ObsoleteFolding, 400, lambda e: (
        f"the header {e.hdr!r} is folded over several lines: send each header on one line")),
    (http_errors.LimitRequestLine, 414, lambda e: (
        f"the request line is too long ({e}): keep the method, URL and version under "
        f"{MAX_REQUEST_LINE_BYTES} bytes")),
    (http_errors.LimitRequestHeaders, 431, lambda e: (
        f"the request headers are too large ({e}): send at most {MAX_HEADER_FIELDS} headers "
        f"of at most {MAX_HEADER_FIELD_BYTES} bytes each")),
    (http_errors.ExpectationFailed, 417, lambda e: (
        f"'Expect: {e.expect}' cannot be met: send no Expect header, or 'Expect: 100-continue'")),
    (http_errors.UnsupportedTransferCoding, 501, lambda e: (
        f"Transfer-Encoding {e.hdr!r} is not supported: send 'Transfer-Encoding: chunked' or a "
        f"Content-Length")),
    (http_errors.InvalidChunkSize, 400, lambda e: (
        f"the chunked body is malformed: {_text(e.data)!r} is not a chunk size in hex; "
        f"{CHUNKED_FORMAT}")),
    (http_errors.ChunkMissingTerminator, 400, _missing_terminator_message),
    (http_errors.InvalidChunkExtension, 400,
     lambda e: f"the chunked body is malformed: {e}; {CHUNKED_FORMAT}"),
    (http_errors.ForbiddenProxyRequest, 403, lambda e: f"the request is refused: {e}"),
    (ClientIdle, 408, lambda e: (
        f"the request was not received in time: {e} while reading it; send the request line, "
        f"headers and body without pausing")),
    (ClientTooSlow, 408, lambda e: (
        f"the request was not received in time: {e}; send the request line, headers and body "
        f"at once")),
    (http_errors.ParseException, 400, lambda e: f"the request is malformed: {e}"),
)
# Parse errors that are not the client's doing: a header our app sent, our configuration.
_OURS = (http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName,
         http_errors.ConfigurationProblem)


def protocol_refusal(error: BaseException) -> RequestError | None:
    """The refusal for a request gunicorn's parser rejected, or None when `error` is not the
    client's doing (a header our app tried to send, a configuration problem, anything else)."""
    if isinstance(error, _OURS):
        return None
    for kind, status, describe in _REFUSALS:
        if isinstance(error, kind):
            return RequestError(describe(error), status)
    return None


def error_response(refusal: RequestError, head: bool = False) -> bytes:
    """A complete HTTP/1.1 response for `refusal`, closing the connection, for answers written
    straight to the socket (the app answers through Flask); without the body for a HEAD."""
    body = refusal.body()
    lines = (f"HTTP/1.1 {refusal.status} {refusal.reason}\r\nConnection: close\r\n"
             f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return lines.encode("latin-1") + (b"" if head else body)
