"""worker.BoundedSocket on a real socket pair: a pause longer than the idle limit is ClientIdle,
bytes that keep dripping in under it are ClientTooSlow at the request's deadline (both 408),
and once the answer is sent reads are the socket's own."""

import socket
import threading
import time

import pytest

from ssd_sagemaker.serving.deadline import RequestClock
from ssd_sagemaker.serving.protocol_errors import ClientIdle, ClientTooSlow, protocol_refusal
from ssd_sagemaker.serving.worker import BoundedSocket


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def _drip(client: socket.socket, every: float, stop: threading.Event) -> None:
    while not stop.wait(every):
        client.sendall(b"a")


def test_a_client_dripping_under_the_idle_limit_is_stopped_at_the_deadline(pair):
    server, client = pair
    bounded = BoundedSocket(server, idle_seconds=0.4, clock=RequestClock(1.0))
    stop = threading.Event()
    dripper = threading.Thread(target=_drip, args=(client, 0.15, stop))
    dripper.start()
    started, received = time.monotonic(), b""
    try:
        with pytest.raises(ClientTooSlow) as error:
            while True:
                received += bounded.recv(10)
    finally:
        stop.set()
        dripper.join()
    assert 0.95 <= time.monotonic() - started < 1.3
    assert len(received) >= 4  # bytes kept coming: never idle
    refusal = protocol_refusal(error.value)
    assert refusal is not None and refusal.status == 408
    assert "it had not all arrived after 1 s, the time a request may take" in refusal.message


def test_a_pause_over_the_idle_limit_is_client_idle(pair):
    server, client = pair
    bounded = BoundedSocket(server, idle_seconds=0.3, clock=RequestClock(5.0))
    client.sendall(b"GET")
    assert bounded.recv(10) == b"GET"
    started = time.monotonic()
    with pytest.raises(ClientIdle, match="nothing arrived for 0.3 s"):
        bounded.recv(10)
    assert 0.25 <= time.monotonic() - started < 0.6


def test_after_the_answer_reads_are_the_sockets_own(pair):
    server, client = pair
    clock = RequestClock(0.1)
    bounded = BoundedSocket(server, idle_seconds=0.1, clock=clock)
    time.sleep(0.15)  # the deadline has passed
    bounded.sendall(b"answer")  # still written: writes get ANSWER_SECONDS more
    assert client.recv(10) == b"answer"
    bounded.shutdown(socket.SHUT_WR)
    client.sendall(b"late")
    assert bounded.recv(10) == b"late"
