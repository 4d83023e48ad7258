"""multi_model.py in one process (Flask's test client) with real tiny exported detectors: the
bodies and refusals of each route; across real gunicorn workers: tests/integration/
test_multi_model.py."""

import json

import mxnet as mx
import pytest

from serving_samples import encode, noise
from ssd_sagemaker.serving.config import ServingConfig
from ssd_sagemaker.serving.model_registry import ModelRegistry
from ssd_sagemaker.serving.multi_model import create_multi_model_app, model_page
from tiny_model import export_tiny_model

JPEG = encode(noise(120, 90))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"fruit": export_tiny_model(root / "fruit", classes=("apple", "pear")),
            "vehicles": export_tiny_model(root / "vehicles", classes=("car", "bus", "van"))}


@pytest.fixture
def client(tmp_path):
    registry = tmp_path / "registry"
    registry.mkdir()
    return create_multi_model_app(ServingConfig(workers=2), ModelRegistry(registry),
                                  mx.cpu()).test_client()


def _refused(response, status, *fragments):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] == status
    for fragment in fragments:
        assert fragment in body["error"], (fragment, body["error"])


def _load(client, name, folder):
    return client.post("/models", json={"model_name": name, "url": str(folder)})


@pytest.mark.parametrize("body, fragments", [
    (b"[1, 2]", ["not a JSON object"]),
    (b"\xff\xfe", ["not a JSON object"]),
    (json.dumps({"url": "/x"}).encode(), ["model_name must be"]),
    (json.dumps({"model_name": "a/b", "url": "/x"}).encode(), ["without '/'", "'a/b'"]),
    (json.dumps({"model_name": "a", "url": "relative/x"}).encode(), ["url must be the absolute"]),
    (json.dumps({"model_name": "", "url": 7}).encode(), ["model_name must be", "url must be"]),
])
def test_a_load_request_that_is_not_a_name_and_a_folder_is_400(client, body, fragments):
    _refused(client.post("/models", data=body, content_type="application/json"), 400,
             *fragments)


def test_load_describe_invoke_unload(client, folders, tmp_path):
    assert client.get("/ping").status_code == 200
    assert _load(client, "fruit", folders["fruit"]).get_json() == {
        "status": "model 'fruit' loaded"}
    _refused(_load(client, "fruit", folders["vehicles"]), 409, "'fruit' is loaded")
    _refused(_load(client, "ghost", tmp_path / "nowhere"), 400, "model 'ghost' cannot be "
             "loaded", "does not exist")
    assert client.get("/models/fruit").get_json() == {
        "modelName": "fruit", "modelUrl": str(folders["fruit"]), "classes": ["apple", "pear"],
        "baseNetwork": "vgg-16", "inputSize": 64, "precision": "float32"}
    answer = client.post("/models/fruit/invoke", data=JPEG, content_type="image/jpeg",
                         headers={"Accept": "application/json;verbose"})
    assert answer.status_code == 200
    assert set(answer.get_json()["class_names"]) <= {"apple", "pear"}
    _refused(client.post("/models/fruit/invoke", data=b"%PDF-1.4", content_type="image/jpeg"),
             415, "PDF")
    _refused(client.post("/models/vehicles/invoke", data=JPEG, content_type="image/jpeg"), 404,
             "model 'vehicles' is not loaded", "POST /models")
    assert client.delete("/models/fruit").status_code == 200
    _refused(client.post("/models/fruit/invoke", data=JPEG, content_type="image/jpeg"), 404)
    _refused(client.get("/invocations"), 404, "/models/<name>/invoke")


def test_a_folder_whose_files_differ_from_its_manifest_is_refused(client, folders, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in folders["fruit"].iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    params = broken / "model_algo_1-0000.params"
    params.write_bytes(params.read_bytes()[:-8])
    _refused(_load(client, "broken", broken), 400, "model 'broken' cannot be loaded",
             "model_algo_1-0000.params")
    assert client.get("/models").get_json() == {"models": []}  # its reservation was released
    assert _load(client, "broken", folders["fruit"]).status_code == 200


def test_pages_follow_the_names(tmp_path):
    registry = ModelRegistry(tmp_path)
    for name in ("c", "a", "b"):
        registry.publish(registry.reserve(name, f"/m/{name}"), {})
    entries = registry.models()
    first = model_page(entries, 2, None)
    assert [m["modelName"] for m in first["models"]] == ["a", "b"]
    assert first["nextPageToken"] == "b"
    assert model_page(entries, 2, "b") == {"models": [{"modelName": "c", "modelUrl": "/m/c"}]}
    assert model_page(entries, 5, None).keys() == {"models"}
