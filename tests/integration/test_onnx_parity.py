"""`export --format onnx` and examples/onnx_predict.py against the endpoint, on a network that
detects: the ResNet-50 SSD fitted at 128 px to 8 synthetic images (tests/support/fitted_model.py,
shared with the INT8 fidelity test: training-set mAP >= 0.9), with an INT8 network beside it as
`quantize=int8` writes one. The runner, in a process where MXNet and ssd_sagemaker cannot be
imported, must return what `ssd-sagemaker predict` returns on those images and on 8 it never
saw: for every detection scoring at least 0.3, the same class, a score within 1e-3 and a box
with IoU >= 0.99, nothing more; and the VOC07 mAP of both on the fitted images within 0.005.
Parity is what is judged, not generalisation: 8 images fit a detector to those images only."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_runner import cli_env, run_cli
from fitted_model import EIGHT_IMAGES, read_images
from ssd_sagemaker.evaluation import DetectionMAP

pytestmark = pytest.mark.slow
SIZE = EIGHT_IMAGES["size"]
CONFIDENT = 0.3
RUNNER = Path(__file__).resolve().parents[2] / "examples" / "onnx_predict.py"
# The runner with MXNet and this package made unimportable: it must need neither.
ISOLATED = ("import runpy, sys; sys.modules['mxnet'] = None; sys.modules['ssd_sagemaker'] = None;"
            " sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, eight_image_detector):
    """The fitted artifact (with an INT8 network), its ONNX export and the export's log."""
    from ssd_sagemaker.model.quantization import write_int8_network

    fitted_model, images, _, fitted = eight_image_detector
    assert fitted >= 0.9, f"the detector did not fit (mAP {fitted:.3f}); nothing to compare"
    root = tmp_path_factory.mktemp("onnx")
    shutil.copytree(fitted_model, root / "model")  # the shared one stays as it was
    shutil.copytree(fitted_model.parent / "train", root / "train")
    write_int8_network(root / "model", images, float32_layers=())
    read_images(root / "held_out", 8, seed=EIGHT_IMAGES["seed"] + 1)
    result = run_cli(root, "export", "--format", "onnx", "--model-dir", str(root / "model"),
                     "--output", str(root / "onnx"))
    assert result.returncode == 0, result.stdout[-3000:]
    return root, result.stdout


def _predict(root: Path, folder: str) -> dict[str, list[list[float]]]:
    """`ssd-sagemaker predict` on a folder: image name -> the endpoint's rows."""
    output = root / f"predicted_{folder}"
    result = run_cli(root, "predict", str(root / folder / "images"), "--model-dir",
                     str(root / "model"), "--output", str(output))
    assert result.returncode == 0, result.stdout[-3000:]
    return {path.name.removesuffix(".json"): json.loads(path.read_text())["prediction"]
            for path in output.glob("*.json")}


def _run_runner(root: Path, folder: str) -> dict[str, list[list[float]]]:
    """examples/onnx_predict.py on a folder's images: image name -> its rows."""
    images = sorted((root / folder / "images").iterdir())
    result = subprocess.run([sys.executable, "-c", ISOLATED, str(RUNNER),
                             str(root / "onnx" / "model.onnx"), *map(str, images)],
                            env=cli_env(root), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["image"] for line in lines] == list(map(str, images))
    return {Path(line["image"]).stem: line["prediction"] for line in lines}


def _confident(rows: list[list[float]], threshold: float = CONFIDENT) -> list[list[float]]:
    return [row for row in rows if row[1] >= threshold]


def _unmatched(expected: list[list[float]], found: list[list[float]]) -> list[str]:
    """What differs between the endpoint's confident rows and the runner's: each expected row
    needs a runner row of its class, score within 1e-3 and IoU >= 0.99 (used once); a confident
    runner row left over is extra."""
    problems, left = [], list(found)
    for row in expected:
        match = next((other for other in left if other[0] == row[0]
                      and abs(other[1] - row[1]) <= 1e-3
                      and _iou(row[2:], other[2:]) >= 0.99), None)
        if match is None:
            problems.append(f"missing {row}")
        else:
            left.remove(match)
    problems += [f"extra {row}" for row in left if row[1] >= CONFIDENT]
    return problems


def _iou(box: list[float], other: list[float]) -> float:
    """IoU of two boxes in fractions (no +1: they are not pixel boxes)."""
    width = min(box[2], other[2]) - max(box[0], other[0])
    height = min(box[3], other[3]) - max(box[1], other[1])
    intersection = max(width, 0.0) * max(height, 0.0)
    union = ((box[2] - box[0]) * (box[3] - box[1]) + (other[2] - other[0]) * (other[3] - other[1])
             - intersection)
    return intersection / union


def _map(root: Path, folder: str, predictions: dict[str, list[list[float]]]) -> float:
    """VOC07 mAP of `predictions` (fractions) against the folder's labels (pixels)."""
    metric = DetectionMAP()
    for annotation in sorted((root / folder / "annotations").glob("*.json")):
        doc = json.loads(annotation.read_text())
        width, height = doc["image_size"][0]["width"], doc["image_size"][0]["height"]
        truth = np.array([[a["left"], a["top"], a["left"] + a["width"] - 1,
                           a["top"] + a["height"] - 1] for a in doc["annotations"]], np.float32)
        rows = np.array(predictions[annotation.stem], np.float32).reshape(-1, 6)
        boxes = rows[:, 2:] * np.array([width, height, width, height], np.float32)
        metric.add_image(boxes, rows[:, 0], rows[:, 1], truth,
                         np.array([a["class_id"] for a in doc["annotations"]]))
    return metric.result().voc07


def test_the_export_writes_the_float32_network_and_what_a_runner_needs(exported):
    root, log = exported
    assert "also holds an INT8 network" in log and "ONNX gets the float32 network" in log
    info = json.loads((root / "onnx" / "model_info.json").read_text())
    assert info["classes"] == ["circle", "square", "triangle"]
    assert info["input"]["shape"] == [1, 3, SIZE, SIZE]
    assert info["input"]["channel_order"] == "RGB"
    assert info["input"]["mean"] == [0.485, 0.456, 0.406]
    assert info["nms"] == {**info["nms"], "overlap_threshold": 0.45, "valid_threshold": 0.01,
                           "top_k": 400, "max_detections": 100, "per_class": True}
    import onnxruntime

    session = onnxruntime.InferenceSession(str(root / "onnx" / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    assert [(value.name, value.shape) for value in session.get_inputs()] == \
        [("data", [1, 3, SIZE, SIZE])]
    assert [value.name for value in session.get_outputs()] == ["scores", "boxes"]


@pytest.mark.parametrize("folder", ["train", "held_out"])
def test_the_runner_returns_the_endpoints_detections(exported, folder):
    root, _ = exported
    expected, found = _predict(root, folder), _run_runner(root, folder)
    assert sorted(found) == sorted(expected)
    confident = {name: _confident(rows) for name, rows in expected.items()}
    assert sum(map(len, confident.values())) >= 5, confident  # something to compare
    problems = {name: _unmatched(_confident(rows, CONFIDENT - 1e-3), found[name])
                for name, rows in expected.items()}
    assert not any(problems.values()), problems
    if folder == "train":
        endpoint, runner = _map(root, folder, expected), _map(root, folder, found)
        assert endpoint > 0.8, endpoint  # a detector, not noise
        assert abs(endpoint - runner) <= 0.005, (endpoint, runner)



def test_the_runner_names_an_image_it_cannot_read_and_predicts_the_others(exported):
    root, _ = exported
    good = sorted((root / "held_out" / "images").iterdir())[0]
    broken = root / "broken.jpg"
    broken.write_bytes(b"not an image")
    result = subprocess.run([sys.executable, "-c", ISOLATED, str(RUNNER),
                             str(root / "onnx" / "model.onnx"), str(broken), str(good)],
                            env=cli_env(root), capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert f"{broken}: not a readable JPEG or PNG image; skipped" in result.stderr
    assert [json.loads(line)["image"] for line in result.stdout.splitlines()] == [str(good)]
