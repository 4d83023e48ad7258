"""Raw HTTP answers read off a socket, for the tests that talk to a real `serve` byte by byte:
the parsed answer (plus anything the server sent after it) and the check of a JSON refusal."""

from __future__ import annotations

import http.client
import io
import json
from dataclasses import dataclass

# The head of a raw `POST /invocations` of a JPEG, up to the framing header and blank line.
POST_HEAD = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes
    raw: bytes  # everything the server sent on the connection
    extra: bytes  # bytes after the (first final) response: must be none

    def json(self):
        return json.loads(self.body)


class _Received(io.BytesIO):
    """Bytes already received, as the socket `http.client.HTTPResponse` parses; it stays open
    when the response is done, so what follows the response can be read."""

    def makefile(self, mode):
        return self

    def close(self):
        pass


def parse_answer(received: bytes, head: bool = False) -> Answer | None:
    """The first final response in `received` (None when nothing was received)."""
    if not received:
        return None
    replay = _Received(received)
    response = http.client.HTTPResponse(replay, method="HEAD" if head else "GET")
    response.begin()  # skips a 100 Continue
    body = response.read()
    return Answer(response.status, response.getheader("Content-Type", ""), body, received,
                  replay.read())


def assert_refused(answer: Answer | None, status: int, *fragments: str) -> None:
    assert answer is not None, "no answer"
    assert answer.status == status, answer.raw[:600]
    assert answer.content_type.startswith("application/json"), answer.raw[:600]
    document = answer.json()
    assert set(document) == {"error", "status"} and document["status"] == status
    for fragment in fragments:
        assert fragment in document["error"], (fragment, document["error"])
