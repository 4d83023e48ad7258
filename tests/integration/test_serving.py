"""`serve` for real: gunicorn subprocesses on 127.0.0.1 serving an exported (untrained) SSD.

Every status code over HTTP, the opt-in response formats, batch transform's parameters,
32 concurrent requests, a killed worker replaced, SIGTERM under load answering every request sent
before it, a broken artifact or environment refusing to start, `predict` matching `/invocations`.
"""

import concurrent.futures
import json
import os
import signal
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from cli_runner import run_cli
from serve_process import BOOT_SECONDS, Server, opt_ml_with_untrained_model
from serving_samples import CLASSES
from ssd_sagemaker.model.artifact import PARAMS_FILE
from ssd_sagemaker.serving.loopback import free_port

pytestmark = pytest.mark.slow

WORKERS = 2


def _jpeg(width=320, height=240, seed=0) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def _png(width=200, height=100) -> bytes:
    return cv2.imencode(".png", np.full((height, width, 3), 90, np.uint8))[1].tobytes()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return opt_ml_with_untrained_model(tmp_path_factory.mktemp("opt_ml"))


@pytest.fixture(scope="module")
def server(base):
    """Two workers, as batch transform starts it: a 1 MB payload limit and 2 megapixels."""
    server = Server(base, SAGEMAKER_MODEL_SERVER_WORKERS=str(WORKERS),
                    SAGEMAKER_MAX_PAYLOAD_IN_MB="1", SSD_MAX_IMAGE_PIXELS="2000000",
                    SAGEMAKER_BATCH="true", SAGEMAKER_BATCH_STRATEGY="SingleRecord",
                    SAGEMAKER_MAX_CONCURRENT_TRANSFORMS=str(WORKERS))
    try:
        yield server.wait_ready()
    finally:
        assert server.stop() == 0, server.output()[-3000:]


def _refused(response: requests.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["status"] == status
    for fragment in fragments:
        assert fragment in body["error"], (fragment, body["error"])


def test_startup_log_shows_the_worker_thread_budget(server):
    threads = os.environ.get("OMP_NUM_THREADS")  # the user's (a test worker's) value is kept
    share = int(threads) if threads else max(1, len(os.sched_getaffinity(0)) // WORKERS)
    output = server.output()
    assert f"{WORKERS} workers x {share} OpenMP threads" in output
    assert "MXNet was imported before" not in output  # the budget really reached MXNet


def test_ping_and_execution_parameters(server):
    ping = requests.get(f"{server.url}/ping", timeout=2)
    assert ping.status_code == 200 and ping.content == b""
    assert requests.get(f"{server.url}/execution-parameters", timeout=5).json() == {
        "MaxConcurrentTransforms": WORKERS, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 1}


def test_images_of_every_supported_type_are_answered(server):
    default = server.post()
    assert default.status_code == 200
    assert default.headers["Content-Type"].startswith("application/json")
    prediction = default.json()["prediction"]
    assert 0 < len(prediction) <= 100
    for class_id, score, *box in prediction:
        assert class_id in (0.0, 1.0) and 0 <= score <= 1
        assert all(0 <= c <= 1 for c in box) and box[0] <= box[2] and box[1] <= box[3]
    assert server.post(_jpeg(), "application/x-image").json() == default.json()
    assert server.post(_jpeg(), "image/png").json() == default.json()  # bytes win
    assert server.post(_jpeg(), "image/jpeg", Accept="*/*").json() == default.json()
    for content_type in ("image/png", "application/x-image"):
        assert server.post(_png(), content_type).status_code == 200


def test_opt_in_response_formats_and_attributes(server):
    default = server.post().json()["prediction"]
    verbose = server.post(Accept="application/json;verbose").json()
    assert verbose["prediction"] == default
    assert verbose["class_names"] == [CLASSES[int(row[0])] for row in default]
    assert verbose["image_size"] == {"width": 320, "height": 240}
    annotation = server.post(Accept="application/json;annotation=1").json()
    assert annotation["image_size"] == [{"width": 320, "height": 240, "depth": 3}]
    first = annotation["annotations"][0]
    assert first["class_id"] == int(default[0][0]) and first["score"] == default[0][1]
    assert first["left"] == pytest.approx(default[0][2] * 320, abs=0.01)
    assert first["width"] == pytest.approx((default[0][4] - default[0][2]) * 320, abs=0.02)
    for accept in ("image/jpeg", "image/png"):
        drawn = server.post(Accept=accept)
        assert drawn.status_code == 200 and drawn.headers["Content-Type"] == accept
        image = cv2.imdecode(np.frombuffer(drawn.content, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (240, 320, 3)
    limited = server.post(**{"X-Amzn-SageMaker-Custom-Attributes": "max_detections=3"})
    assert limited.json()["prediction"] == default[:3]
    threshold = default[len(default) // 2][1]
    above = server.post(**{"X-Amzn-SageMaker-Custom-Attributes": f"score_threshold={threshold}"})
    assert above.json()["prediction"] == [row for row in default if row[1] >= threshold]


def test_every_client_mistake_has_its_status_and_a_json_reason(server):
    _refused(server.post(b"a,b\n1,2", "text/csv"), 415, "text/csv", "image/jpeg")
    _refused(server.post(b"GIF89a" + bytes(64)), 415, "GIF")
    _refused(server.post(Accept="text/csv"), 406, "text/csv", "application/json")
    _refused(server.post(**{"X-Amzn-SageMaker-Custom-Attributes": "score_threshold=2"}), 400,
             "score_threshold='2'")
    _refused(server.post(b"definitely not an image"), 400, "decoded")
    _refused(server.post(b""), 400, "empty")
    _refused(server.post(_jpeg()[:3000]), 400, "truncated")
    _refused(server.post(_png()[:-20], "image/png"), 400, "truncated")
    flat = cv2.imencode(".jpg", np.zeros((1500, 2000, 3), np.uint8))[1].tobytes()
    _refused(server.post(flat), 413, "2000 x 1500", "SSD_MAX_IMAGE_PIXELS")
    too_big = b"\xff\xd8\xff" + bytes(1024 * 1024)
    _refused(server.post(too_big), 413, "SAGEMAKER_MAX_PAYLOAD_IN_MB")
    chunked = server.post(iter([too_big[i:i + 65536] for i in range(0, len(too_big), 65536)]))
    _refused(chunked, 413, "SAGEMAKER_MAX_PAYLOAD_IN_MB")
    _refused(requests.get(f"{server.url}/invocations", timeout=5), 405)
    _refused(requests.get(f"{server.url}/nothing-here", timeout=5), 404)
    assert " 500 " not in server.output()  # none of these was our failure


def test_32_concurrent_requests_all_answered_identically(server):
    bodies = [_jpeg(seed=0), _jpeg(seed=1)]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(lambda i: server.post(bodies[i % 2]), range(32)))
    assert [r.status_code for r in responses] == [200] * 32
    for parity in (0, 1):
        predictions = [r.json() for r in responses[parity::2]]
        assert all(p == predictions[0] for p in predictions), "same image, different answers"


def test_predict_command_matches_the_endpoint(server, base, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "one.jpg").write_bytes(_jpeg(seed=3))
    (images / "two.png").write_bytes(_png())
    result = run_cli(base, "predict", "--output", str(tmp_path / "out"), str(images),
                     timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for name, body, content_type in (("one", _jpeg(seed=3), "image/jpeg"),
                                     ("two", _png(), "image/png")):
        written = json.loads((tmp_path / "out" / f"{name}.json").read_text())["prediction"]
        served = server.post(body, content_type).json()["prediction"]
        assert np.allclose(written, served, atol=1e-5)
        annotated = cv2.imread(str(tmp_path / "out" / f"{name}.annotated.jpg"))
        assert annotated.shape[:2] == cv2.imdecode(np.frombuffer(body, np.uint8), 1).shape[:2]


def test_a_killed_worker_is_replaced(server):
    """Runs last among the shared-server tests: it changes the worker set."""
    before = server.workers()
    assert len(before) == WORKERS
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    assert server.post().status_code == 200  # the other worker answers meanwhile
    deadline = time.monotonic() + BOOT_SECONDS
    while True:
        now = server.workers()
        if len(now) == WORKERS and victim not in now:
            break
        assert time.monotonic() < deadline, f"workers {now} after killing {victim}"
        time.sleep(0.3)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda _: server.post().status_code, range(8)))
    assert statuses == [200] * 8
    assert requests.get(f"{server.url}/ping", timeout=2).status_code == 200


def test_sigterm_under_load_answers_every_request_sent_before_it(base):
    """Two requests are running and the others wait on the listening socket when SIGTERM
    arrives: all are answered, then the server exits 0 and refuses new connections."""
    server = Server(base, SAGEMAKER_MODEL_SERVER_WORKERS=str(WORKERS)).wait_ready()
    total, done = 16, []
    try:
        def call(i):
            response = server.post(_jpeg(seed=i))
            done.append(i)
            return response

        with concurrent.futures.ThreadPoolExecutor(total) as pool:
            futures = [pool.submit(call, i) for i in range(total)]
            time.sleep(1.5)  # all sent: two running, the rest queued on the listening socket
            finished_before_stop = len(done)
            server.process.send_signal(signal.SIGTERM)
            responses = [f.result(timeout=120) for f in futures]
        assert finished_before_stop < total, "the load was over before SIGTERM: nothing tested"
        assert [r.status_code for r in responses] == [200] * total
        assert all(r.json()["prediction"] for r in responses)
        assert server.process.wait(timeout=40) == 0, server.output()[-3000:]
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{server.url}/ping", timeout=2)
    finally:
        server.stop()


def _serve_until_exit(base: Path, timeout: float = BOOT_SECONDS, **env: str):
    started = time.monotonic()
    result = run_cli(base, "serve", timeout=timeout, SAGEMAKER_BIND_TO_PORT=str(free_port()),
                     **env)
    return result, time.monotonic() - started


def test_a_truncated_params_file_stops_serve_before_it_starts(base, tmp_path):
    broken = tmp_path / "opt_ml"
    (broken / "model").mkdir(parents=True)
    for item in (base / "model").iterdir():
        (broken / "model" / item.name).write_bytes(item.read_bytes())
    params = broken / "model" / PARAMS_FILE
    params.write_bytes(params.read_bytes()[:1_000_000])
    result, seconds = _serve_until_exit(broken)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert str(params) in output and "truncated" in output
    assert "Booting worker" not in output and seconds < 60


def test_params_of_another_network_stop_serve_with_the_workers_reason(base, tmp_path):
    import mxnet as mx

    broken = tmp_path / "opt_ml"
    (broken / "model").mkdir(parents=True)
    for item in (base / "model").iterdir():
        (broken / "model" / item.name).write_bytes(item.read_bytes())
    mx.nd.save(str(broken / "model" / PARAMS_FILE), {"arg:some_other_weight": mx.nd.ones((4,))})
    (broken / "model" / "manifest.json").unlink()  # a user's own folder: the master cannot tell
    result, seconds = _serve_until_exit(broken, SAGEMAKER_MODEL_SERVER_WORKERS="2")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Booting worker" in output  # the header check passed; loading failed in the worker
    last_line = result.stdout.strip().splitlines()[-1]  # our log; gunicorn's is on stderr
    assert "ClientError" in last_line and PARAMS_FILE in last_line, output
    assert seconds < 90


def test_a_bad_environment_stops_serve_naming_each_variable(base):
    result, seconds = _serve_until_exit(base, timeout=60, SSD_SCORE_THRESHOLD="high",
                                        SAGEMAKER_MODEL_SERVER_WORKERS="none")
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "SSD_SCORE_THRESHOLD='high'" in output
    assert "SAGEMAKER_MODEL_SERVER_WORKERS='none'" in output
    assert "Booting worker" not in output
