"""deadline.py: a request's time budget below gunicorn's timeout, and work that cannot finish in
it answered with a JSON 503 on time, even when the time goes into one native call (a libjpeg
decode) that no signal handler could interrupt."""

import time

import pytest
import simplejpeg

from progressive_jpeg import progressive_jpeg
from serving_samples import StubPredictor, encode, noise
from ssd_sagemaker.serving.app import create_app
from ssd_sagemaker.serving.deadline import (
    ENVIRON_KEY,
    MARGIN_SECONDS,
    RequestClock,
    WorkTimedOut,
    request_seconds,
    run_before_deadline,
)
from ssd_sagemaker.serving.request_errors import UndecodableImage


@pytest.mark.parametrize("timeout,expected", [(60, 48.0), (10, 6.0), (8, 4.0), (4, 2.0),
                                              (1, 0.5)])
def test_the_request_deadline_leaves_gunicorn_time_to_answer_and_close(timeout, expected):
    assert request_seconds(timeout) == expected
    assert request_seconds(timeout) <= timeout - min(MARGIN_SECONDS, timeout / 2)


def test_work_in_time_returns_its_result_and_its_own_errors():
    clock = RequestClock(5)
    assert run_before_deadline(clock, lambda: 42) == 42

    def refuse():
        raise UndecodableImage("the body is not an image")

    with pytest.raises(UndecodableImage, match="not an image"):
        run_before_deadline(clock, refuse)
    assert not clock.abandoned
    assert run_before_deadline(None, lambda: "inline") == "inline"


def test_a_native_call_past_the_deadline_is_answered_at_the_deadline():
    """The decode of 2,090 scans at 2000 x 2000 takes 3.6 s in one libjpeg-turbo call; the
    503 comes at the 0.5 s deadline (a SIGALRM handler would run only after the call)."""
    hostile = progressive_jpeg(2000, 2000, 2090)
    clock = RequestClock(0.5)
    started = time.monotonic()
    with pytest.raises(WorkTimedOut, match="had not finished when the request's 0.5 s ran out"):
        run_before_deadline(clock, lambda: simplejpeg.decode_jpeg(hostile, strict=True))
    assert time.monotonic() - started < 1.5
    assert clock.abandoned and WorkTimedOut.status == 503


def test_the_app_answers_work_past_the_deadline_with_a_json_503():
    class SlowPredictor(StubPredictor):
        def detect(self, image):
            time.sleep(2)
            return super().detect(image)

    client = create_app(SlowPredictor()).test_client()
    started = time.monotonic()
    response = client.post("/invocations", data=encode(noise(64, 48)), content_type="image/jpeg",
                           environ_base={ENVIRON_KEY: RequestClock(0.3)})
    assert time.monotonic() - started < 1.5
    assert response.status_code == 503 and response.mimetype == "application/json"
    assert response.get_json() == {"status": 503, "error": (
        "the image was not processed in time: decoding and detection had not finished when the "
        "request's 0.3 s ran out (the deadline follows SAGEMAKER_MODEL_SERVER_TIMEOUT); retry, "
        "or send a smaller image.")}
