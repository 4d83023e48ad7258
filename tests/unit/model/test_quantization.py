"""model/quantization.py and the INT8 entry of the artifact: the INT8 network is written beside
the float32 one (which stays byte for byte the same), listed in model_info.json, loaded back,
and answers in the float32 network's format; fidelity is VOC07 mAP against float32."""

import json

import numpy as np
import pytest

from serving_samples import encode, noise
from ssd_sagemaker.model.artifact import (
    INT8_PARAMS_FILE,
    INT8_SYMBOL_FILE,
    PARAMS_FILE,
    SYMBOL_FILE,
    read_model_info,
)
from ssd_sagemaker.model.quantization import (
    agreement_map,
    float32_candidates,
    write_int8_network,
)
from ssd_sagemaker.serving.config import ServingConfig
from ssd_sagemaker.serving.handlers import Predictor
from ssd_sagemaker.serving.pipeline import detect_in_bytes
from tiny_model import export_tiny_model


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    """The tiny exported detector plus its INT8 network, as `quantize=int8` adds it."""
    model_dir = export_tiny_model(tmp_path_factory.mktemp("model"))
    before = {name: (model_dir / name).read_bytes() for name in (SYMBOL_FILE, PARAMS_FILE)}
    images = np.random.default_rng(0).uniform(-2, 2, (6, 3, 64, 64)).astype(np.float32)
    entry, written = write_int8_network(model_dir, images)
    return model_dir, before, written, entry


def test_the_int8_network_is_written_beside_the_unchanged_float32_one(int8_model):
    model_dir, before, written, entry = int8_model
    assert sorted(p.name for p in written) == sorted([INT8_SYMBOL_FILE, INT8_PARAMS_FILE,
                                                      "model_info.json"])
    for name, data in before.items():
        assert (model_dir / name).read_bytes() == data, f"{name} changed"
    graph = json.loads((model_dir / INT8_SYMBOL_FILE).read_text())
    quantized = [n for n in graph["nodes"] if n.get("attrs", {}).get("quantized") == "true"
                 or n["op"].startswith("_contrib_quantize")]
    assert quantized, "no quantized operator in the INT8 graph"
    listed = json.loads((model_dir / "model_info.json").read_text())["int8"]
    assert listed["symbol_file"] == INT8_SYMBOL_FILE
    assert listed["params_file"] == INT8_PARAMS_FILE
    assert listed["calibration_images"] == 6
    assert 0.0 <= listed["fidelity_map"] <= 1.0  # the tiny detector's scores reach 0.5
    assert read_model_info(model_dir).int8 == entry


def test_a_float32_artifact_has_no_int8_entry(tmp_path):
    model_dir = export_tiny_model(tmp_path)
    assert "int8" not in json.loads((model_dir / "model_info.json").read_text())
    assert read_model_info(model_dir).int8 is None


def test_the_int8_predictor_answers_like_the_float32_one(int8_model):
    model_dir = int8_model[0]
    config = ServingConfig()
    body = encode(noise(160, 120, seed=3))
    answers = {precision: detect_in_bytes(Predictor(model_dir, precision=precision), body,
                                          config.max_image_pixels, config.limits)
               for precision in ("float32", "int8")}
    float32, int8 = answers["float32"], answers["int8"]
    assert len(int8.rows) == len(float32.rows) > 0
    for row in int8.rows:
        assert len(row) == 6 and all(isinstance(value, float) for value in row)
        assert 0.0 <= min(row[2:]) and max(row[2:]) <= 1.0
    assert [row[1] for row in int8.rows] == sorted((row[1] for row in int8.rows), reverse=True)
    assert json.loads(int8.render())["prediction"]  # the endpoint's JSON, as for float32


def test_candidates_go_from_none_to_the_first_convolution_and_the_heads(tmp_path):
    nodes = [{"op": "null", "name": "data"}]
    nodes += [{"op": "Convolution", "name": f"ssd0_resnetv10_conv{i}_fwd"} for i in range(3)]
    nodes += [{"op": "Convolution", "name": f"ssd0_convpredictor{i}_conv0_fwd"} for i in range(2)]
    nodes += [{"op": "Flatten", "name": "ssd0_flatten0"}]
    symbol = tmp_path / "symbol.json"
    symbol.write_text(json.dumps({"nodes": nodes, "heads": [[5, 0, 0]]}))
    assert float32_candidates(symbol) == [
        (), ("ssd0_resnetv10_conv0_fwd",),
        ("ssd0_resnetv10_conv0_fwd", "ssd0_convpredictor0_conv0_fwd",
         "ssd0_convpredictor1_conv0_fwd")]


def _image(rows):
    """One image's network outputs (ids, scores, boxes) from [class, score, x1, y1, x2, y2]."""
    rows = np.asarray(rows, np.float32).reshape(-1, 6)
    return rows[:, :1], rows[:, 1:2], rows[:, 2:]


def test_agreement_is_voc07_map_against_the_confident_float32_detections():
    reference = [_image([[0, 0.9, 10, 10, 50, 50], [1, 0.3, 60, 60, 90, 90]])]
    assert agreement_map(reference, reference, 100) == pytest.approx(1.0)
    outside = [_image([[2, 0.8, -300, -300, 60, 60]])]  # clipped as served: still itself
    assert agreement_map(outside, outside, 100) == pytest.approx(1.0)
    moved = [_image([[0, 0.9, 40, 40, 80, 80], [1, 0.3, 60, 60, 90, 90]])]
    assert agreement_map(reference, moved, 100) == pytest.approx(0.0)
    relabelled = [_image([[1, 0.9, 10, 10, 50, 50]])]
    assert agreement_map(reference, relabelled, 100) == pytest.approx(0.0)
    padding = [_image([[-1, 0.0, 0, 0, 0, 0]])]
    assert agreement_map(padding, reference, 100) is None  # nothing confident to compare with
