"""model/onnx_export.py's refusals, and examples/onnx_predict.py's NMS held to MXNet's own
`box_nms` as GluonCV's SSD calls it (per class, top-k, valid threshold, stable order). The
export's parity with the endpoint on a fitted detector is tests/integration/test_onnx_parity.py.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from cli_runner import run_cli
from serving_samples import export_untrained_model
from tiny_model import export_tiny_model

RUNNER_FILE = Path(__file__).resolve().parents[3] / "examples" / "onnx_predict.py"


def _runner():
    spec = importlib.util.spec_from_file_location("onnx_predict", RUNNER_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RUNNER = _runner()


def _mxnet_nms(scores: np.ndarray, boxes: np.ndarray, nms: dict) -> np.ndarray:
    """GluonCV's SSD tail on (anchors x classes) scores and (anchors x 4) boxes: the per-class
    decoder's mask, rows of (id, score, box) class after class, `box_nms`, the post-NMS slice;
    padding rows dropped."""
    anchors, classes = scores.shape
    masked = scores > nms["valid_threshold"]
    ids = np.where(masked, np.arange(classes, dtype=np.float32), -1).T.reshape(-1, 1)
    rows = np.concatenate([ids, np.where(masked, scores, 0).T.reshape(-1, 1),
                           np.tile(boxes, (classes, 1))], axis=1).astype(np.float32)
    result = mx.nd.contrib.box_nms(
        mx.nd.array(rows[None]), overlap_thresh=nms["overlap_threshold"],
        topk=nms["top_k"] or -1, valid_thresh=nms["valid_threshold"], id_index=0,
        score_index=1, coord_start=2, force_suppress=False)[0].asnumpy()
    result = result[:nms["max_detections"]] if nms["max_detections"] else result
    return result[result[:, 0] >= 0]


def _scene(seed: int, anchors: int = 400, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Boxes crowded around a few objects (IoUs on both sides of the threshold, some boxes
    without an area) and softmax scores with exact ties, as a confident SSD gives them."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(20, 100, (5, 2))[rng.integers(0, 5, anchors)]
    centres += rng.normal(0, 4, (anchors, 2))
    sides = rng.uniform(-2, 40, (anchors, 2))
    boxes = np.concatenate([centres - sides / 2, centres + sides / 2], axis=1)
    logits = rng.normal(0, 3, (anchors, classes + 1))
    logits[rng.random(anchors) < 0.1, 1:] = 40.0  # saturated: several scores exactly 1.0
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return probabilities[:, 1:].astype(np.float32), boxes.astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("overlap", "top_k", "max_detections"),
                         [(0.45, 400, 100), (0.3, 50, 20), (0.7, None, None)])
def test_the_runner_keeps_what_mxnet_box_nms_keeps(seed, overlap, top_k, max_detections):
    scores, boxes = _scene(seed)
    nms = {"overlap_threshold": overlap, "valid_threshold": 0.01, "top_k": top_k,
           "max_detections": max_detections}
    expected = _mxnet_nms(scores, boxes, nms)
    assert len(expected) > 10 and len(np.unique(expected[:, 0])) == 3  # a crowded scene
    np.testing.assert_array_equal(RUNNER.after_nms(scores, boxes, nms), expected)


def test_boxes_of_different_classes_do_not_suppress_each_other():
    scores = np.array([[0.9, 0.0], [0.0, 0.8], [0.7, 0.0]], np.float32)  # anchors x classes
    boxes = np.array([[10, 10, 50, 50]] * 3, np.float32)
    nms = {"overlap_threshold": 0.45, "valid_threshold": 0.01, "top_k": 400,
           "max_detections": 100}
    kept = RUNNER.after_nms(scores, boxes, nms)
    np.testing.assert_allclose(kept[:, :2], [[0, 0.9], [1, 0.8]])  # anchor 2 suppressed
    np.testing.assert_array_equal(kept, _mxnet_nms(scores, boxes, nms))


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    return export_untrained_model(tmp_path_factory.mktemp("model"))


def _copy_with_graph(model: Path, target: Path, change) -> dict:
    """`model`'s artifact in `target` (links), its symbol file changed by `change(graph)`."""
    target.mkdir()
    for source in model.iterdir():
        (target / source.name).symlink_to(source)
    symbol = target / "model_algo_1-symbol.json"
    graph = json.loads(symbol.read_text())
    symbol.unlink()
    change(graph)
    symbol.write_text(json.dumps(graph))
    return graph


def test_an_operator_without_an_onnx_converter_is_refused_naming_it(untrained, tmp_path):
    def gradient_scaler_for_first_relu(graph: dict) -> None:
        # An identity forward (a gradient scaler) that MXNet's exporter cannot convert: the
        # graph still loads and runs, but has no ONNX form.
        relu = next(node for node in graph["nodes"] if node["op"] == "Activation")
        relu.update(op="_contrib_gradientmultiplier", attrs={"scalar": "1.0"})

    graph = _copy_with_graph(untrained, tmp_path / "model", gradient_scaler_for_first_relu)
    changed = next(node["name"] for node in graph["nodes"]
                   if node["op"] == "_contrib_gradientmultiplier")
    result = run_cli(tmp_path, "export", "--format", "onnx", "--model-dir",
                     str(tmp_path / "model"), "--output", str(tmp_path / "onnx"))
    assert result.returncode == 1, result.stdout[-3000:]
    assert f"no converter for _contrib_gradientmultiplier (nodes {changed})" in result.stdout
    assert "Traceback" not in result.stdout
    assert not (tmp_path / "onnx").exists()


def test_a_graph_that_is_not_an_ssd_is_refused(tmp_path):
    model = export_tiny_model(tmp_path / "model")
    result = run_cli(tmp_path, "export", "--format", "onnx", "--model-dir", str(model),
                     "--output", str(tmp_path / "onnx"))
    assert result.returncode == 1, result.stdout[-3000:]
    assert "is not the SSD graph this container exports" in result.stdout
    assert "Traceback" not in result.stdout
    assert not (tmp_path / "onnx").exists()


def test_an_incomplete_artifact_is_refused_before_conversion(tmp_path):
    (tmp_path / "model").mkdir()
    result = run_cli(tmp_path, "export", "--model-dir", str(tmp_path / "model"), "--output",
                     str(tmp_path / "onnx"))
    assert result.returncode == 1, result.stdout[-3000:]
    assert "is incomplete: missing model_algo_1-symbol.json" in result.stdout


def test_the_runner_refuses_a_model_without_its_description(tmp_path, capsys):
    (tmp_path / "model.onnx").write_bytes(b"not read")
    with pytest.raises(SystemExit, match=r"model_info.json cannot be read .* written beside "
                                         r"model.onnx by `ssd-sagemaker export --format onnx`"):
        RUNNER.main([str(tmp_path / "model.onnx"), str(tmp_path / "photo.jpg")])


def test_the_nms_settings_are_read_from_the_graph(untrained):
    from ssd_sagemaker.model.onnx_export import NmsSettings, find_pre_nms_outputs

    symbol = untrained / "model_algo_1-symbol.json"
    graph = json.loads(symbol.read_text())
    found = find_pre_nms_outputs(graph, symbol)
    assert found.nms == NmsSettings(overlap_threshold=0.45, valid_threshold=0.01, top_k=400,
                                    max_detections=100)
    nodes = graph["nodes"]
    assert nodes[next(i for i, n in enumerate(nodes) if n["name"] == found.scores)]["op"] == "where"
    # nms_threshold=1 (GluonCV then leaves box_nms and the post-NMS slice out): the outputs are
    # sliced from the per-class rows themselves.
    nms = next(index for index, node in enumerate(nodes) if node["op"] == "_contrib_box_nms")
    for head in graph["heads"]:
        nodes[head[0]]["inputs"] = [nodes[nms]["inputs"][0]]
    assert find_pre_nms_outputs(graph, symbol).nms == NmsSettings(
        overlap_threshold=None, valid_threshold=0.01, top_k=None, max_detections=None)
