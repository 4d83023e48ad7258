"""Hostile HTTP against a real `serve` (gunicorn, two workers) over raw sockets.

The protocol errors gunicorn answers itself and malformed chunked framing get the documented
JSON body with the right status; then a bounded, derandomized property-based fuzz of request
lines, headers and framing: only documented statuses, every error a JSON `{"error", "status"}`
matching its status, no 500, a 200 of the documented shape, exactly one response per
connection and never a byte of another request, and the same workers still answering after.

Bodies are absent, random bytes or a valid JPEG: a corrupt JPEG or PNG is the image decoder's
business (tests of `decode_image`), not the HTTP layer's.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import json
import socket

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from http_answers import POST_HEAD, Answer, assert_refused, parse_answer
from serve_process import Server, opt_ml_with_untrained_model

pytestmark = pytest.mark.slow

WORKERS = 2
PAYLOAD_MB = 1
DOCUMENTED_STATUSES = {200, 400, 404, 405, 406, 413, 414, 415, 417, 431, 501}
JPEG = cv2.imencode(".jpg", np.random.default_rng(1).integers(0, 255, (48, 64, 3), np.uint8)
                    )[1].tobytes()
FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Two workers with a 1 MB payload limit, shared by every test here."""
    server = Server(opt_ml_with_untrained_model(tmp_path_factory.mktemp("opt_ml")),
                    SAGEMAKER_MODEL_SERVER_WORKERS=str(WORKERS),
                    SAGEMAKER_MAX_PAYLOAD_IN_MB=str(PAYLOAD_MB))
    try:
        server.wait_ready()
        server.first_workers = server.workers()  # the same ones must answer after everything
        yield server
    finally:
        assert server.stop() == 0, server.output()[-3000:]


def exchange(server: Server, raw: bytes, head: bool = False, timeout: float = 60
             ) -> Answer | None:
    """Send `raw` on a new connection, close our side (so a short body ends, as when a client
    goes away), and parse what comes back; None when the server sent nothing at all."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as connection:
        try:
            connection.sendall(raw)
            connection.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before taking everything: the answer is still there
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return parse_answer(received, head)



# Items 3 and 4 of the hostile-input issue, one by one.

@pytest.mark.parametrize("chunks,fragment", [
    (b"zz\r\nabc\r\n0\r\n\r\n", "'zz' is not a chunk size in hex"),
    (b"-5\r\nabcde\r\n0\r\n\r\n", "'-5' is not a chunk size in hex"),
    (b"3\r\nabcXX0\r\n\r\n", "not followed by \\r\\n (found 'XX')"),
    (b"3;\x01\r\nabc\r\n0\r\n\r\n", "chunk extension"),
    (b"3\r\nabc\r\n0\r\nX Bad: b\r\n\r\n", "'X Bad'"),  # a malformed trailer
    (b"10\r\nabc", "the connection closed before the last chunk"),
    (b"3\r\nabc\r\n", "the connection closed before the last chunk"),
], ids=["bad-hex-size", "negative-size", "missing-crlf", "bad-extension", "bad-trailer",
        "truncated-chunk", "no-last-chunk"])
def test_malformed_chunked_bodies_are_a_json_400(server, chunks, fragment):
    answer = exchange(server, POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    assert_refused(answer, 400, "chunk" if b"X Bad" not in chunks else "header", fragment)


def test_a_body_shorter_than_its_content_length_is_a_json_400(server):
    answer = exchange(server, POST_HEAD + b"Content-Length: 100\r\n\r\n" + JPEG[:40])
    assert_refused(answer, 400, "40 of the 100 bytes its Content-Length announces")


@pytest.mark.parametrize("raw,status,fragment", [
    (POST_HEAD + b"X-Note: a\x01b\r\nContent-Length: 0\r\n\r\n", 400, "control characters"),
    (POST_HEAD + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400, "send it once"),
    (POST_HEAD + b"Content-Length: 12abc\r\n\r\n", 400, "decimal number"),
    (POST_HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
     400, "never together with Transfer-Encoding"),
    (b"GET /ping?" + b"q" * 4096 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "4094 bytes"),
    (b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 8192 + b"\r\n\r\n", 431,
     "8190 bytes each"),
    (b"GET /ping HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(101)) + b"\r\n",
     431, "at most 100 headers"),
    (POST_HEAD + b"Expect: teapot\r\nContent-Length: 0\r\n\r\n", 417, "'Expect: teapot'"),
    (POST_HEAD + b"Transfer-Encoding: rot13\r\n\r\n", 501, "'rot13'"),
    (b"G@T /ping HTTP/1.1\r\nHost: x\r\n\r\n", 400, "'G@T' is not an HTTP method"),
], ids=["control-character", "duplicated-length", "non-numeric-length", "te-and-length",
        "4kb-url", "8kb-header", "101-headers", "bad-expect", "unknown-coding", "bad-method"])
def test_protocol_errors_get_gunicorns_status_with_the_json_body(server, raw, status, fragment):
    assert_refused(exchange(server, raw), status, fragment)


def test_bytes_after_a_request_are_never_answered_nor_echoed(server):
    """A second request smuggled behind the first (in the body beyond Content-Length) is
    neither answered on this connection nor seen in the next one."""
    smuggled = b"GET /nothing-SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n"
    first = exchange(server, b"GET /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                     + smuggled)
    assert first.status == 200 and first.extra == b"" and b"SMUGGLED" not in first.raw
    second = exchange(server, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert second.status == 200 and b"SMUGGLED" not in second.raw


# The fuzz.

SENT_TOKENS: list[bytes] = []
SEEN = collections.Counter()
_serial = itertools.count()

# Weighted towards POST /invocations, where the app's own refusals are.
BASE_METHODS = ["GET", "POST", "HEAD", "POST", "OPTIONS", "PUT", "POST", "DELETE"]
BASE_PATHS = ["/ping", "/invocations", "/execution-parameters", "/invocations", "/nothing-here"]
BASE_HEADERS = {
    "Content-Type": ["image/jpeg", "image/png", "application/x-image", "text/csv", "",
                     "image/jpeg; charset=binary", "image/*", "application/json"],
    "Accept": ["*/*", "application/json", "application/json;verbose", "image/png",
               "application/json;annotation=1", "text/csv", "", "image/*;q=0"],
    "X-Amzn-SageMaker-Custom-Attributes": ["max_detections=3", "score_threshold=2", "foo=bar",
                                           "score_threshold=0.5,max_detections=1",
                                           "max_detections=-1", ""],
    "Expect": ["100-continue", "100-Continue"],
    "Connection": ["close", "keep-alive", "upgrade"],
}
BODIES = [b"", b"not an image", b"\x00" * 64, JPEG]
# What the fuzz breaks in a plausible request, one or two things at a time.
BAD_METHODS = ["get", "G@T", "", "P\x00ST", "POST POST", "FOO", "ABCDEFGHIJKLMNOPQRSTU", "CONNECT",
               "TRACE", "PATCH"]
BAD_PATHS = ["invocations", "*", "host:80", "/\x7fping", "/ping\x01", "/caf\u00e9", "/ping%00",
             "/invocations/", "//invocations", "/%2e%2e/invocations", "/a/../ping",
             "http://host/invocations", "/" + "a" * 4100, "/ping?" + "q=1&" * 1100]
BAD_VERSIONS = ["HTTP/2.0", "HTTP/0.9", "http/1.1", "HTTP/1.1x", "HTTP/11", "", "HTTP/1.1 x"]
BAD_SEPARATORS = ["  ", "\t", " \t"]
BAD_HEADER_NAMES = [b"X Space", b"X_Under", b"X-\x01", b"", b"X-\xe9", b"(X)", b"X-Colon:"]
CONTROL_CHARACTERS = [bytes([c]) for c in (*range(0, 9), *range(10, 32), 127)]
BAD_EXPECT = [b"200-ok", b"100-continue, x", b"teapot"]
SINGLETONS = [b"Host", b"Content-Type"]
LENGTH_FORMATS = ["+%d", " %d ", "%d, %d", "0x%x", "%d.0", "-%d", "%d%d", "", "1e3", "\u0661"]
LENGTH_ERRORS = [1, -1, 10, PAYLOAD_MB * 2 ** 20 + 1]
TE_VALUES = ["Chunked", "chunked, chunked", "gzip, chunked", "identity, chunked", "gzip",
             "rot13", "chunked, gzip", "identity", ""]
CHUNK_FLAWS = ["missing-crlf", "bad-hex", "negative", "truncated", "no-last-chunk",
               "uppercase", "leading-zeros", "trailer", "bad-trailer", "extension",
               "bad-extension", "no-final-crlf", "huge"]
MUTATIONS = ["method", "path", "version", "separator", "header-name", "control-character",
             "folding", "bare-lf", "duplicate", "many-headers", "long-header", "length-format",
             "length-mismatch", "duplicate-length", "transfer-encoding", "length-and-chunked",
             "chunk-flaw", "expect"]


def _chunked(body: bytes, cuts: list[int], flaw: str = "none") -> bytes:
    """`body` as a chunked body cut at `cuts`, with one framing `flaw` ("none": valid)."""
    points = sorted({0, len(body), *(c % (len(body) + 1) for c in cuts)})
    size = {"uppercase": b"%X", "leading-zeros": b"000%x"}.get(flaw, b"%x")
    chunks = [size % (b - a) + b"\r\n" + body[a:b] + b"\r\n" for a, b in zip(points, points[1:])]
    if flaw == "missing-crlf" and chunks:
        chunks[0] = chunks[0][:-2] + b"XY"
    first = {"bad-hex": b"zz\r\n", "negative": b"-1\r\n", "huge": b"fffffff\r\n"}.get(flaw, b"")
    last = {"no-last-chunk": b"", "trailer": b"0\r\nX-Trailer: t\r\n\r\n",
            "bad-trailer": b"0\r\nX Trailer: t\r\n\r\n", "no-final-crlf": b"0\r\n",
            "extension": b"0;name=value\r\n\r\n", "bad-extension": b"0;\x01\r\n\r\n"
            }.get(flaw, b"0\r\n\r\n")
    out = first + b"".join(chunks) + last
    return out[:len(out) // 2] if flaw == "truncated" else out


@st.composite
def hostile_requests(draw) -> tuple[bytes, bool, bytes]:
    """(raw request, whether it is a HEAD, its token): a plausible request with one or two
    things broken (`MUTATIONS`), or none. The token is in its path and a header, so any echo
    of it elsewhere is caught."""
    token = b"tok%05dz" % next(_serial)
    broken = draw(st.lists(st.sampled_from(MUTATIONS), max_size=2, unique=True))
    for mutation in broken:
        event(f"mutation {mutation}")
    method = draw(st.sampled_from(BAD_METHODS if "method" in broken else BASE_METHODS))
    path = draw(st.sampled_from(BAD_PATHS if "path" in broken else BASE_PATHS))
    path += ("&" if "?" in path else "?") + "t=" + token.decode()
    version = draw(st.sampled_from(BAD_VERSIONS)) if "version" in broken else "HTTP/1.1"
    separator = draw(st.sampled_from(BAD_SEPARATORS)) if "separator" in broken else " "
    line = f"{method}{separator}{path}{separator}{version}".encode()

    headers = [(b"Host", b"x"), (b"X-Token", token)]
    names = draw(st.lists(st.sampled_from(sorted(BASE_HEADERS)), max_size=3, unique=True))
    if "Content-Type" not in names and draw(st.integers(0, 3)):  # mostly one
        names.append("Content-Type")
    for name in names:
        headers.append((name.encode(), draw(st.sampled_from(BASE_HEADERS[name])).encode()))
    if "header-name" in broken:
        headers.append((draw(st.sampled_from(BAD_HEADER_NAMES)) + token, b"v"))
    if "control-character" in broken:
        control = draw(st.sampled_from(CONTROL_CHARACTERS))
        headers.append((b"X-Note-" + token, b"a" + control + b"b"))
    if "duplicate" in broken:
        headers.append((draw(st.sampled_from(SINGLETONS)), b"again"))
    if "expect" in broken:
        headers.append((b"Expect", draw(st.sampled_from(BAD_EXPECT))))

    body = draw(st.sampled_from(BODIES) | st.binary(max_size=200))
    chunked = draw(st.booleans()) and not {"length-format", "length-mismatch",
                                           "duplicate-length"} & set(broken)
    if chunked or {"transfer-encoding", "length-and-chunked", "chunk-flaw"} & set(broken):
        te = draw(st.sampled_from(TE_VALUES)) if "transfer-encoding" in broken else "chunked"
        headers.append((b"Transfer-Encoding", te.encode()))
        flaw = draw(st.sampled_from(CHUNK_FLAWS)) if "chunk-flaw" in broken else "none"
        length = len(body)
        body = _chunked(body, draw(st.lists(st.integers(0, 300), max_size=3)), flaw)
        if "length-and-chunked" in broken:
            headers.append((b"Content-Length", b"%d" % length))
    elif draw(st.integers(0, 5)) or {"length-format", "length-mismatch", "duplicate-length"
                                     } & set(broken):  # mostly a Content-Length
        declared = len(body)
        if "length-mismatch" in broken:
            declared = max(0, declared + draw(st.sampled_from(LENGTH_ERRORS)))
        text = draw(st.sampled_from(LENGTH_FORMATS)) if "length-format" in broken else "%d"
        value = text % ((declared,) * text.count("%"))
        headers.append((b"Content-Length", value.encode("utf-8")))
        if "duplicate-length" in broken:
            headers.append((b"Content-Length", draw(st.sampled_from([value, "0", "7"])).encode()))
    headers = draw(st.permutations(headers))
    if "folding" in broken:
        headers.append((b"X-Folded", b"one\r\n two"))
    if "many-headers" in broken:
        headers += [(b"X-Many-%d" % i, b"v") for i in range(101)]
    if "long-header" in broken:
        headers.append((b"X-Long", b"v" * 8200))
    head = line + b"\r\n" + b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    head += b"\r\n"
    if "bare-lf" in broken:
        head = head.replace(b"\r\n", b"\n")
    SENT_TOKENS.append(token)
    return head + body, method == "HEAD", token


def check_answer(answer: Answer | None, raw: bytes, head: bool, token: bytes) -> None:
    """The properties every answer to every request has."""
    assert answer is not None, f"no answer to {raw[:300]!r}"
    assert answer.status in DOCUMENTED_STATUSES, (answer.raw[:600], raw[:300])
    others = [t for t in SENT_TOKENS if t != token and t in answer.raw]
    assert not others, ("bytes of another request", others, answer.raw[:600])
    if head:
        # A HEAD refused before its request line is parsed (the server cannot know it is a
        # HEAD) gets the refusal's body too; the connection closes after it, so no client can
        # take it for a response of its own.
        assert not answer.extra or json.loads(answer.extra)["status"] == answer.status
        return
    assert answer.extra == b"", ("a second response on the connection", answer.raw[:600])
    if answer.status != 200:
        assert answer.content_type.startswith("application/json"), answer.raw[:600]
        document = answer.json()
        assert set(document) == {"error", "status"}, document
        assert document["status"] == answer.status and document["error"], document
        return
    if not answer.body:
        assert not raw.startswith(b"POST"), "an empty 200 to a POST"
        return  # /ping, OPTIONS
    document = answer.json()
    if "MaxConcurrentTransforms" in document:
        assert document["MaxPayloadInMB"] == PAYLOAD_MB
        return
    check_prediction(document)


def check_prediction(document) -> None:
    """`{"prediction": [[class_id, score, xmin, ymin, xmax, ymax], ...]}`, fractions."""
    assert set(document) == {"prediction"}, document
    for row in document["prediction"]:
        assert len(row) == 6 and all(isinstance(v, float) for v in row), row
        class_id, score, *box = row
        assert class_id in (0.0, 1.0) and 0 <= score <= 1 and all(0 <= c <= 1 for c in box)
    SEEN["predictions"] += 1


@settings(FUZZ, max_examples=600)
@given(hostile=hostile_requests())
def test_fuzzed_requests_get_documented_answers(server, hostile):
    raw, head, token = hostile
    answer = exchange(server, raw, head)
    check_answer(answer, raw, head, token)
    SEEN[answer.status] += 1
    event(f"status {answer.status}")


@settings(FUZZ, max_examples=40)
@given(burst=st.lists(hostile_requests(), min_size=2, max_size=8))
def test_concurrent_hostile_requests_each_get_their_own_answer(server, burst):
    """Both workers busy with different broken requests at once: still one documented answer
    per connection, carrying nothing of the others."""
    with concurrent.futures.ThreadPoolExecutor(len(burst)) as pool:
        answers = list(pool.map(lambda hostile: exchange(server, hostile[0], hostile[1]), burst))
    for (raw, head, token), answer in zip(burst, answers):
        check_answer(answer, raw, head, token)
        SEEN[answer.status] += 1


@settings(FUZZ, max_examples=5)
@given(cuts=st.lists(st.integers(0, len(JPEG)), max_size=4),
       framing=st.sampled_from(["chunked", "length", "expect-chunked", "expect-length"]),
       accept=st.sampled_from(["", "*/*", "application/json"]))
def test_every_valid_framing_of_an_image_gets_the_same_prediction(server, cuts, framing,
                                                                  accept):
    """Chunk boundaries, Expect: 100-continue and Content-Length do not change the answer."""
    headers = POST_HEAD + (b"Accept: %s\r\n" % accept.encode() if accept else b"")
    if framing.startswith("expect"):
        headers += b"Expect: 100-continue\r\n"
    if framing.endswith("chunked"):
        raw = headers + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(JPEG, cuts)
    else:
        raw = headers + b"Content-Length: %d\r\n\r\n" % len(JPEG) + JPEG
    answer = exchange(server, raw)
    assert answer.status == 200 and answer.extra == b"", answer.raw[:600]
    check_prediction(answer.json())
    assert answer.json() == reference_prediction(server)


_REFERENCE: dict = {}  # the reference answer, asked of the server once


def reference_prediction(server: Server) -> dict:
    """The answer to the JPEG sent plainly, with a Content-Length (asked once)."""
    if "answer" not in _REFERENCE:
        _REFERENCE["answer"] = exchange(
            server, POST_HEAD + b"Content-Length: %d\r\n\r\n" % len(JPEG) + JPEG).json()
    return _REFERENCE["answer"]


def test_the_same_workers_still_answer_after_the_fuzz(server):
    """Runs last: no worker died or was replaced, nothing was a 500, a valid request works."""
    answer = exchange(server, POST_HEAD + b"Content-Length: %d\r\n\r\n" % len(JPEG) + JPEG)
    assert answer.status == 200 and answer.json() == reference_prediction(server)
    assert server.workers() == server.first_workers
    output = server.output()
    assert '" 500 ' not in output and "Traceback" not in output, output[-3000:]
    print(f"fuzz answers by status: {dict(SEEN)}")
