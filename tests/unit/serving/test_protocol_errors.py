"""Malformed HTTP: gunicorn's parser in the serving worker, in process over a socket pair, answers
each protocol error with its status and the JSON error body; the app answers malformed or
incomplete chunked framing (found while it reads the body) with a JSON 400, not a 500, and an
unknown path or method with what is served."""

import json
import os
import socket

import pytest
from gunicorn.http import errors as http_errors

from serving_samples import encode, noise
from ssd_sagemaker.serving.app import create_app
from ssd_sagemaker.serving.config import ServingConfig
from ssd_sagemaker.serving.model_server import ModelServer
from ssd_sagemaker.serving.protocol_errors import protocol_refusal
from ssd_sagemaker.serving.worker import ServingWorker

POST = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"


@pytest.fixture
def worker(tmp_path):
    """The worker as `serve` configures it (limits included), never forked."""
    cfg = ModelServer(tmp_path, ServingConfig(), tmp_path / "failure").cfg
    return ServingWorker(1, os.getpid(), [], None, 30, cfg, cfg.logger_class(cfg))


def _exchange(worker, raw: bytes) -> tuple[int, dict]:
    """Send `raw` to the worker over a socket pair; its answer's status and JSON body."""
    ours, theirs = socket.socketpair()
    with ours:
        ours.settimeout(10)
        ours.sendall(raw)
        ours.shutdown(socket.SHUT_WR)
        worker.handle(None, theirs, ("127.0.0.1", 40000))
        answer = b""
        while chunk := ours.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *headers = head.decode("latin-1").split("\r\n")
    assert "content-type: application/json" in (h.lower() for h in headers), answer
    assert f"content-length: {len(body)}" in (h.lower() for h in headers), answer
    return int(status_line.split()[1]), json.loads(body)


@pytest.mark.parametrize("raw,status,fragment", [
    (POST + b"X-Note: a\x01b\r\nContent-Length: 0\r\n\r\n", 400, "control characters"),
    (POST + b"X-Note: a\x7fb\r\nContent-Length: 0\r\n\r\n", 400, "X-NOTE"),
    (POST + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400, "Content-Length"),
    (POST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, "Content-Length"),
    (POST + b"Content-Length: three\r\n\r\nabc", 400, "decimal number"),
    (POST + b"Content-Length: -1\r\n\r\n", 400, "Content-Length"),
    (POST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
     400, "never together with Transfer-Encoding"),
    (POST + b"Transfer-Encoding: gzip\r\n\r\n", 400, "Transfer-Encoding"),
    (POST + b"Transfer-Encoding: magic\r\n\r\n", 501, "'magic'"),
    (b"GET /" + b"a" * 4100 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "4094 bytes"),
    (b"GET /ping HTTP/1.1\r\nX-Big: " + b"a" * 8200 + b"\r\n\r\n", 431, "8190 bytes"),
    (b"GET /ping HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n",
     431, "at most 100 headers"),
    (b"G@T /ping HTTP/1.1\r\nHost: x\r\n\r\n", 400, "'G@T' is not an HTTP method"),
    (b"GET /ping HTTP/7.0\r\nHost: x\r\n\r\n", 400, "HTTP version"),
    (b"GET ping HTTP/1.1\r\nHost: x\r\n\r\n", 400, "request line"),
    (b"GET /ping HTTP/1.1\nHost: x\n\n", 400, "\\r\\n"),
    (POST + b"X Note: b\r\nContent-Length: 0\r\n\r\n", 400, "'X Note'"),
    (POST + b"X-Note: b\r\n folded\r\nContent-Length: 0\r\n\r\n", 400, "one line"),
    (POST + b"Expect: 200-ok\r\nContent-Length: 0\r\n\r\n", 417, "100-continue"),
], ids=["control-character", "delete-character", "same-length-twice", "two-lengths",
        "non-numeric-length", "negative-length", "te-and-length", "te-not-chunked",
        "unknown-coding", "4kb-url", "8kb-header", "101-headers", "bad-method", "bad-version",
        "path-without-slash", "bare-lf", "space-in-name", "folded-header", "bad-expect"])
def test_a_protocol_error_gets_gunicorns_status_with_a_json_reason(worker, raw, status,
                                                                   fragment):
    answered, body = _exchange(worker, raw)
    assert (answered, body["status"]) == (status, status)
    assert fragment in body["error"], body["error"]


def test_a_refused_head_request_gets_the_status_without_a_body(worker):
    """When gunicorn's error carries the parsed request (framing headers do), a HEAD gets no
    body; before the method is known, the refusal has its body and the connection closes."""
    ours, theirs = socket.socketpair()
    with ours:
        ours.sendall(b"HEAD /ping HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n")
        ours.shutdown(socket.SHUT_WR)
        worker.handle(None, theirs, ("127.0.0.1", 40000))
        answer = ours.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.endswith(b"\r\n\r\n"), answer


def test_our_own_failure_in_the_worker_is_a_json_500(worker, monkeypatch):
    def broken(*args):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(worker, "handle_request", broken)
    status, body = _exchange(worker, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body["status"]) == (500, 500)
    assert "RuntimeError" in body["error"] and "a bug of ours" not in body["error"]


@pytest.mark.parametrize("error", [
    http_errors.InvalidResponseHeader("X-Ours"), http_errors.InvalidResponseHeaderName("X Ours"),
    http_errors.ConfigurationProblem("bad setting"), RuntimeError("bug")])
def test_errors_that_are_not_the_clients_are_not_refusals(error):
    assert protocol_refusal(error) is None


class FailingStream:
    """A WSGI input that fails as gunicorn's body reader does on broken chunked framing."""

    def __init__(self, error: BaseException):
        self.error = error

    def read(self, size=-1):
        raise self.error

    def readinto(self, buffer):
        raise self.error


@pytest.fixture
def client(stub):
    return create_app(stub, ServingConfig(max_payload_mb=1)).test_client()


def _post_stream(client, stream, **environ):
    environ = {"wsgi.input": stream, "wsgi.input_terminated": True, **environ}
    return client.post("/invocations", content_type="image/jpeg", environ_overrides=environ)


@pytest.mark.parametrize("error,fragment", [
    (http_errors.InvalidChunkSize(b"zz"), "'zz' is not a chunk size in hex"),
    (http_errors.InvalidChunkSize(b"-5"), "'-5' is not a chunk size in hex"),
    (http_errors.ChunkMissingTerminator(b"XX"), "not followed by \\r\\n (found 'XX')"),
    (http_errors.ChunkMissingTerminator(b""), "the body ended"),
    (http_errors.InvalidChunkExtension("bare CR not allowed"), "bare CR not allowed"),
    (http_errors.InvalidHeaderName("X Trailer"), "'X Trailer'"),  # a bad trailer
    (http_errors.NoMoreData(b""), "the connection closed before the last chunk"),
], ids=["bad-hex-size", "negative-size", "missing-crlf", "body-ends-after-chunk",
        "bad-extension", "bad-trailer", "no-last-chunk"])
def test_malformed_chunked_framing_read_by_the_app_is_a_json_400(client, stub, error, fragment):
    response = _post_stream(client, FailingStream(error))
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] == 400 and fragment in body["error"], body["error"]
    assert stub.calls == 0


def test_a_body_shorter_than_its_content_length_is_a_json_400(client, stub):
    image = encode(noise(64, 48))
    response = client.post("/invocations", data=image[:100], content_type="image/jpeg",
                           environ_overrides={"wsgi.input_terminated": True,
                                              "CONTENT_LENGTH": str(len(image))})
    assert response.status_code == 400
    assert f"100 of the {len(image)} bytes its Content-Length announces" in \
        response.get_json()["error"]
    assert stub.calls == 0


def test_a_failure_of_ours_while_reading_the_body_stays_a_500(client):
    response = _post_stream(client, FailingStream(RuntimeError("bug")))
    assert response.status_code == 500 and response.get_json()["status"] == 500


def test_an_unknown_path_or_method_is_named_with_what_is_served(client):
    missing = client.get("/predict")
    assert missing.status_code == 404 and missing.get_json()["status"] == 404
    assert missing.get_json()["error"] == (
        "/predict is not served; the routes are: GET /ping, GET /execution-parameters, "
        "POST /invocations.")
    wrong = client.put("/invocations")
    assert wrong.status_code == 405 and wrong.get_json()["status"] == 405
    assert wrong.get_json()["error"] == "PUT is not allowed on /invocations; use POST."
    assert wrong.headers["Allow"] == "OPTIONS, POST"
