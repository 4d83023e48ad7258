"""The image as a multi-model endpoint runs it: `serve` with `SAGEMAKER_MULTI_MODEL=true`, the
models' folders mounted where SageMaker extracts them (`/opt/ml/models/NAME/model`), two
gunicorn workers, under a podman `--memory` limit: the contract end to end (load, 409, list,
describe, invoke each with its own classes, delete, 404, a non-model folder refused), and a
507 from the container's real cgroup limit. HTTP goes to 127.0.0.1 only."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import requests
from podman_support import RUN_FLAGS, podman, tail

from serving_samples import encode, export_untrained_model, noise
from ssd_sagemaker.serving.loopback import NotHealthy, free_port, wait_until_healthy
from tiny_model import export_tiny_model

pytestmark = pytest.mark.slow

FRUIT = ("apple", "pear")
VEHICLES = ("car", "truck", "bus")
JPEG = encode(noise(160, 120))


def _run_multi_model(image: str, models: Path, memory: str, workers: int) -> tuple[str, str]:
    """A detached multi-model container on a free port; (url, container name)."""
    port, name = free_port(), f"ssd-sagemaker-mme-{uuid.uuid4().hex[:8]}"
    started = podman("run", "-d", "--name", name, *RUN_FLAGS, "--memory", memory,
                     "-v", f"{models}:/opt/ml/models:ro", "-e", "SAGEMAKER_MULTI_MODEL=true",
                     "-e", f"SAGEMAKER_BIND_TO_PORT={port}",
                     "-e", f"SAGEMAKER_MODEL_SERVER_WORKERS={workers}", image, "serve")
    assert started.returncode == 0, started.stderr
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, 180, interval=0.5)
    except NotHealthy as error:
        logs = podman("logs", name).stdout + podman("logs", name).stderr
        podman("rm", "-f", "-t", "0", name)
        raise AssertionError(f"{error}:\n{tail(logs)}") from None
    return url, name


def _load(url: str, name: str) -> requests.Response:
    return requests.post(f"{url}/models", json={"model_name": name,
                                                "url": f"/opt/ml/models/{name}/model"},
                         timeout=120)


def test_the_multi_model_contract_in_the_image(image, tmp_path):
    models = tmp_path / "models"
    export_tiny_model(models / "fruit" / "model", classes=FRUIT)
    export_tiny_model(models / "vehicles" / "model", image_shape=96, classes=VEHICLES)
    (models / "notes" / "model").mkdir(parents=True)
    (models / "notes" / "model" / "readme.txt").write_text("no model\n")
    url, name = _run_multi_model(image, models, "1g", workers=2)
    try:
        assert _load(url, "fruit").status_code == 200
        assert _load(url, "vehicles").status_code == 200
        assert _load(url, "fruit").status_code == 409
        refused = _load(url, "notes")
        assert refused.status_code == 400 and "incomplete" in refused.json()["error"]
        listed = requests.get(f"{url}/models", timeout=10).json()["models"]
        assert [m["modelName"] for m in listed] == ["fruit", "vehicles"]
        assert requests.get(f"{url}/models/vehicles", timeout=10).json()["classes"] == \
            list(VEHICLES)
        for model, classes in (("fruit", FRUIT), ("vehicles", VEHICLES)):
            for _ in range(6):  # both workers
                answer = requests.post(f"{url}/models/{model}/invoke", data=JPEG, timeout=60,
                                       headers={"Content-Type": "image/jpeg",
                                                "Accept": "application/json;verbose"})
                assert answer.status_code == 200, answer.text
                assert set(answer.json()["class_names"]) <= set(classes)
        assert requests.delete(f"{url}/models/fruit", timeout=10).status_code == 200
        for _ in range(6):
            assert requests.post(f"{url}/models/fruit/invoke", data=JPEG, timeout=60,
                                 headers={"Content-Type": "image/jpeg"}).status_code == 404
        assert requests.get(f"{url}/ping", timeout=2).status_code == 200
    finally:
        podman("rm", "-f", "-t", "0", name)


def test_a_model_over_the_container_memory_limit_is_507(image, tmp_path):
    """An SSD300 (93 MB of parameters: about 300 MB per copy) in a 400 MB container."""
    models = tmp_path / "models"
    export_untrained_model(models / "big" / "model")
    url, name = _run_multi_model(image, models, "400m", workers=1)
    try:
        refused = _load(url, "big")
        assert refused.status_code == 507, refused.text
        assert "the container's limit" in refused.json()["error"]
        assert requests.get(f"{url}/ping", timeout=2).status_code == 200
        state = podman("inspect", name, "--format", "{{.State.OOMKilled}} {{.State.Running}}")
        assert state.stdout.split() == ["false", "true"]
    finally:
        podman("rm", "-f", "-t", "0", name)
