"""Requests that break HTTP itself (request line, headers, framing), as gunicorn's parser reports
them: the status and the sentence the client gets, in the same JSON body as every other refusal.

gunicorn finds most of these before the app runs (its worker answers them, see `worker.py`);
a chunked body's framing is parsed only while the app reads it (`app._read_body`). Both ask
`protocol_refusal` here, so a malformed request gets the same answer wherever it is found.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus

from gunicorn.http import errors as http_errors

from ssd_sagemaker.serving.request_errors import RequestError

# The request limits the server sets in gunicorn (its defaults), named in the refusals.
MAX_REQUEST_LINE_BYTES = 4094
MAX_HEADER_FIELDS = 100
MAX_HEADER_FIELD_BYTES = 8190

CHUNKED_FORMAT = ("send each chunk as '<size in hex>\\r\\n<data>\\r\\n' and end the body with "
                  "'0\\r\\n\\r\\n'")


@dataclass(frozen=True)
class Refusal:
    """How a request is refused: its HTTP status and what the client did wrong."""

    status: int
    message: str

    @property
    def reason(self) -> str:
        """The status line's reason phrase."""
        return HTTPStatus(self.status).phrase


class MalformedRequest(RequestError):
    """A request whose HTTP is broken (found while the app reads the body): its refusal's
    status, 400 for malformed framing."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.message)
        self.status = refusal.status


def error_document(status: int, message: str) -> dict:
    """The documented error body, `{"error": sentence, "status": code}`."""
    return {"error": message, "status": status}


def _header_refusal(error: http_errors.InvalidHeader) -> Refusal:
    name = str(error.hdr)
    if name == "CONTENT-LENGTH":
        return Refusal(400, "the Content-Length header is invalid: send it once, as a decimal "
                            "number of bytes, and never together with Transfer-Encoding")
    if name == "TRANSFER-ENCODING":
        return Refusal(400, "the Transfer-Encoding header is invalid: send 'chunked' once, last, "
                            "on HTTP/1.1 (and no Content-Length), or no Transfer-Encoding")
    return Refusal(400, f"a header is invalid ({error}): send 'Name: value' lines ending in "
                        f"\\r\\n, values without control characters, Host and Content-Type once")


def protocol_refusal(error: BaseException) -> Refusal | None:
    """The refusal for a request gunicorn's parser rejected, or None when `error` is not the
    client's doing (a header our app tried to send, a configuration problem, anything else)."""
    if isinstance(error, (http_errors.InvalidResponseHeader,
                          http_errors.InvalidResponseHeaderName,
                          http_errors.ConfigurationProblem)):
        return None
    if isinstance(error, http_errors.InvalidRequestLine):
        return Refusal(400, f"the request line is malformed ({error}): send 'METHOD /path "
                            f"HTTP/1.1' with the path in printable ASCII (percent-encode the rest) "
                            f"and lines ending in \\r\\n")
    if isinstance(error, http_errors.InvalidRequestMethod):
        return Refusal(400, f"{error.method!r} is not an HTTP method: send GET or POST")
    if isinstance(error, http_errors.InvalidHTTPVersion):
        return Refusal(400, f"the HTTP version is not served ({error}): send HTTP/1.1")
    if isinstance(error, http_errors.InvalidHeaderName):
        return Refusal(400, f"the header name {error.hdr!r} is invalid: use letters, digits "
                            f"and '-' (no '_', spaces or control characters)")
    if isinstance(error, http_errors.InvalidHeader):
        return _header_refusal(error)
    if isinstance(error, http_errors.ObsoleteFolding):
        return Refusal(400, f"the header {error.hdr!r} is folded over several lines: send each "
                            f"header on one line")
    if isinstance(error, http_errors.LimitRequestLine):
        return Refusal(414, f"the request line is too long ({error}): keep the method, URL and "
                            f"version under {MAX_REQUEST_LINE_BYTES} bytes")
    if isinstance(error, http_errors.LimitRequestHeaders):
        return Refusal(431, f"the request headers are too large ({error}): send at most "
                            f"{MAX_HEADER_FIELDS} headers of at most {MAX_HEADER_FIELD_BYTES} "
                            f"bytes each")
    if isinstance(error, http_errors.ExpectationFailed):
        return Refusal(417, f"'Expect: {error.expect}' cannot be met: send no Expect header, or "
                            f"'Expect: 100-continue'")
    if isinstance(error, http_errors.UnsupportedTransferCoding):
        return Refusal(501, f"Transfer-Encoding {error.hdr!r} is not supported: send "
                            f"'Transfer-Encoding: chunked' or a Content-Length")
    if isinstance(error, http_errors.InvalidChunkSize):
        size = error.data.decode("latin-1") if isinstance(error.data, bytes) else error.data
        return Refusal(400, f"the chunked body is malformed: {size!r} is not a chunk size in "
                            f"hex; {CHUNKED_FORMAT}")
    if isinstance(error, http_errors.ChunkMissingTerminator):
        term = error.term.decode("latin-1") if isinstance(error.term, bytes) else error.term
        found = f"found {term!r}" if term else "the body ended"
        return Refusal(400, f"the chunked body is malformed: a chunk is not followed by \\r\\n "
                            f"({found}); {CHUNKED_FORMAT}")
    if isinstance(error, http_errors.InvalidChunkExtension):
        return Refusal(400, f"the chunked body is malformed: {error}; {CHUNKED_FORMAT}")
    if isinstance(error, http_errors.ForbiddenProxyRequest):
        return Refusal(403, f"the request is refused: {error}")
    if isinstance(error, http_errors.ParseException):
        return Refusal(400, f"the request is malformed: {error}")
    return None


def error_response(refusal: Refusal, head: bool = False) -> bytes:
    """A complete HTTP/1.1 response for `refusal`, closing the connection, for answers written
    straight to the socket (the app answers through Flask); without the body for a HEAD."""
    body = json.dumps(error_document(refusal.status, f"{refusal.message}."),
                      separators=(",", ":")).encode("utf-8")
    lines = (f"HTTP/1.1 {refusal.status} {refusal.reason}\r\nConnection: close\r\n"
             f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return lines.encode("latin-1") + (b"" if head else body)
