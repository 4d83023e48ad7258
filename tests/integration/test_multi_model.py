"""`serve` with `SAGEMAKER_MULTI_MODEL=true`, for real: a 2-worker gunicorn server on 127.0.0.1
driven through SageMaker's multi-model contract with two tiny detectors of different classes.

Each request opens its own connection, so consecutive requests reach either worker: a load, a
list, an invoke and a delete agree whichever worker answers. `/ping` is polled all along.
"""

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from serve_process import Server
from serving_samples import encode, noise
from tiny_model import export_tiny_model

pytestmark = pytest.mark.slow

WORKERS = 2
ROUNDS = 8  # requests per check: with 2 workers, both answer some of them
FRUIT = ("apple", "pear")
VEHICLES = ("car", "truck", "bus")
JPEG = encode(noise(160, 120))


class PingWatch:
    """`GET /ping` every 0.2 s in a thread; the statuses seen (None: no answer)."""

    def __init__(self, url: str):
        self.url, self.statuses = url, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.statuses.append(requests.get(f"{self.url}/ping", timeout=2).status_code)
            except requests.RequestException:
                self.statuses.append(None)
            self._stop.wait(0.2)

    def stop(self, at_least: int = 3) -> list:
        """The statuses, once at least `at_least` pings have been answered or not (at most 10 s
        more), so that a quick test still watches the server for a while."""
        deadline = time.monotonic() + 10
        while len(self.statuses) < at_least and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(5)
        return self.statuses


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    not_a_model = root / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("no model here\n")
    return {"fruit": export_tiny_model(root / "fruit" / "model", classes=FRUIT),
            "vehicles": export_tiny_model(root / "vehicles" / "model", image_shape=96,
                                          classes=VEHICLES),
            "none": not_a_model}


def _server(base: Path, **env: str) -> Server:
    return Server(base, SAGEMAKER_MULTI_MODEL="true",
                  SAGEMAKER_MODEL_SERVER_WORKERS=str(WORKERS), **env).wait_ready()


def _load(server: Server, name: str, folder: Path) -> requests.Response:
    return requests.post(f"{server.url}/models", json={"model_name": name, "url": str(folder)},
                         timeout=60)


def _invoke(server: Server, name: str, **headers: str) -> requests.Response:
    return requests.post(f"{server.url}/models/{name}/invoke", data=JPEG,
                         headers={"Content-Type": "image/jpeg", **headers}, timeout=60)


def _refused(response: requests.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status
    for fragment in fragments:
        assert fragment in body["error"], (fragment, body["error"])


def _class_names_everywhere(server: Server, name: str) -> set[str]:
    """The class names `name` answers with over ROUNDS invokes, sent 2 x WORKERS at a time so
    that every worker answers some (one after another, a worker that is free again may take
    them all, as one CI run saw)."""
    seen = set()
    with ThreadPoolExecutor(2 * WORKERS) as pool:
        responses = list(pool.map(
            lambda _: _invoke(server, name, Accept="application/json;verbose"), range(ROUNDS)))
    for response in responses:
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["class_names"]) == len(body["prediction"]) > 0
        seen.update(body["class_names"])
    return seen


def test_the_multi_model_contract_across_workers(tmp_path, artifacts):
    server = _server(tmp_path)
    pings = PingWatch(server.url)
    try:
        assert requests.get(f"{server.url}/models", timeout=5).json() == {"models": []}
        assert _load(server, "fruit", artifacts["fruit"]).status_code == 200
        assert _load(server, "vehicles", artifacts["vehicles"]).status_code == 200
        _refused(_load(server, "fruit", artifacts["vehicles"]), 409, "model 'fruit' is loaded")
        _refused(_load(server, "broken", artifacts["none"]), 400, "model 'broken' cannot be "
                 "loaded", "incomplete: missing model_algo_1-symbol.json")
        _refused(requests.post(f"{server.url}/models", data=b"{not json", timeout=5), 400,
                 "not a JSON object")

        for _ in range(ROUNDS):  # every worker sees both models, and only those
            listed = requests.get(f"{server.url}/models", timeout=5).json()
            assert listed == {"models": [
                {"modelName": "fruit", "modelUrl": str(artifacts["fruit"])},
                {"modelName": "vehicles", "modelUrl": str(artifacts["vehicles"])}]}
        first = requests.get(f"{server.url}/models?max_results=1", timeout=5).json()
        assert first == {"models": [{"modelName": "fruit", "modelUrl": str(artifacts["fruit"])}],
                         "nextPageToken": "fruit"}
        second = requests.get(f"{server.url}/models?max_results=1&next_page_token=fruit",
                              timeout=5).json()
        assert [m["modelName"] for m in second["models"]] == ["vehicles"]
        assert "nextPageToken" not in second
        _refused(requests.get(f"{server.url}/models?max_results=0", timeout=5), 400,
                 "max_results")
        assert requests.get(f"{server.url}/models/vehicles", timeout=5).json() == {
            "modelName": "vehicles", "modelUrl": str(artifacts["vehicles"]),
            "classes": list(VEHICLES), "baseNetwork": "vgg-16", "inputSize": 96,
            "precision": "float32"}

        assert _class_names_everywhere(server, "fruit") <= set(FRUIT)
        assert _class_names_everywhere(server, "vehicles") <= set(VEHICLES)
        # /invocations' refusals and formats, for one model
        _refused(_invoke(server, "fruit", Accept="text/csv"), 406, "text/csv")
        _refused(requests.post(f"{server.url}/models/fruit/invoke", data=b"GIF89a",
                               headers={"Content-Type": "text/plain"}, timeout=10), 415)
        _refused(_invoke(server, "fruit", **{
            "X-Amzn-SageMaker-Custom-Attributes": "max_detections=0"}), 400, "max_detections")
        one = _invoke(server, "fruit", **{"X-Amzn-SageMaker-Custom-Attributes":
                                          "max_detections=1"})
        assert len(one.json()["prediction"]) == 1
        drawn = _invoke(server, "fruit", Accept="image/png")
        assert drawn.headers["Content-Type"] == "image/png"
        assert drawn.content.startswith(b"\x89PNG")

        assert requests.delete(f"{server.url}/models/fruit", timeout=5).status_code == 200
        for _ in range(ROUNDS):  # no worker answers for it any more
            _refused(_invoke(server, "fruit"), 404, "model 'fruit' is not loaded")
        _refused(requests.get(f"{server.url}/models/fruit", timeout=5), 404)
        _refused(requests.delete(f"{server.url}/models/fruit", timeout=5), 404)
        # the name again, now for the vehicles: every worker drops its old copy
        assert _load(server, "fruit", artifacts["vehicles"]).status_code == 200
        assert _class_names_everywhere(server, "fruit") <= set(VEHICLES)
    finally:
        statuses = pings.stop()
        assert server.stop() == 0, server.output()[-3000:]
    assert len(statuses) >= 3 and set(statuses) == {200}, statuses
    loads = re.findall(r"worker (\d+) loaded model '(\w+)' from (\S+)", server.output())
    assert len(loads) == len(set(loads)), loads  # at most once per worker and load
    assert len({pid for pid, _, _ in loads}) == WORKERS, loads  # both workers loaded some


def test_a_model_that_does_not_fit_is_507_and_the_server_stays_up(tmp_path, artifacts):
    server = _server(tmp_path, SSD_MME_MEMORY_LIMIT_MB="1")
    try:
        _refused(_load(server, "fruit", artifacts["fruit"]), 507,
                 "model 'fruit' does not fit in memory", "SSD_MME_MEMORY_LIMIT_MB=1",
                 "DELETE /models/NAME")
        assert requests.get(f"{server.url}/models", timeout=5).json() == {"models": []}
        _refused(_invoke(server, "fruit"), 404)
        assert requests.get(f"{server.url}/ping", timeout=2).status_code == 200
        time.sleep(0.5)
        assert server.process.poll() is None
    finally:
        assert server.stop() == 0, server.output()[-3000:]
