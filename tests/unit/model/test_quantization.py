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
    Fidelity,
    agreement_map,
    float32_candidates,
    map_against_labels,
    meets_fidelity_goals,
    write_int8_network,
)
from ssd_sagemaker.serving.config import ServingConfig
from ssd_sagemaker.serving.pipeline import detect_in_bytes
from ssd_sagemaker.serving.predictor import Predictor
from tiny_model import export_tiny_model


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    """The tiny exported detector plus its INT8 network, as `quantize=int8` adds it."""
    model_dir = export_tiny_model(tmp_path_factory.mktemp("model"))
    before = {name: (model_dir / name).read_bytes() for name in (SYMBOL_FILE, PARAMS_FILE)}
    images = np.random.default_rng(0).uniform(-2, 2, (6, 3, 64, 64)).astype(np.float32)
    labels = [np.array([[8, 8, 40, 40, 0], [-1, -1, -1, -1, -1]], np.float32)] * len(images)
    entry, written = write_int8_network(model_dir, images, labels)
    return model_dir, before, written, entry


def test_the_int8_network_is_written_beside_the_unchanged_float32_one(int8_model):
    model_dir, before, written, entry = int8_model
    assert sorted(p.name for p in written) == sorted([INT8_SYMBOL_FILE, INT8_PARAMS_FILE,
                                                      "model_info.json", "manifest.json"])
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
    assert 0.0 <= listed["labels_map"] <= 1.0 and 0.0 <= listed["float32_labels_map"] <= 1.0
    assert read_model_info(model_dir).int8 == entry


def test_an_int8_entry_written_before_the_labels_were_measured_still_reads(int8_model):
    model_dir = int8_model[0]
    info_file = model_dir / "model_info.json"
    text = info_file.read_text()
    try:
        raw = json.loads(text)
        del raw["int8"]["labels_map"], raw["int8"]["float32_labels_map"]
        info_file.write_text(json.dumps(raw))
        entry = read_model_info(model_dir).int8
        assert entry is not None and entry.labels_map is None and entry.float32_labels_map is None
        assert not meets_fidelity_goals(entry)  # unmeasured: `auto` does not take it
    finally:
        info_file.write_text(text)


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


def test_candidates_go_from_none_to_the_heads_then_the_heads_and_the_first_convolution(
        tmp_path):
    nodes = [{"op": "null", "name": "data"}]
    nodes += [{"op": "Convolution", "name": f"ssd0_resnetv10_conv{i}_fwd"} for i in range(3)]
    nodes += [{"op": "Convolution", "name": f"ssd0_convpredictor{i}_conv0_fwd"} for i in range(2)]
    nodes += [{"op": "Flatten", "name": "ssd0_flatten0"}]
    symbol = tmp_path / "symbol.json"
    symbol.write_text(json.dumps({"nodes": nodes, "heads": [[5, 0, 0]]}))
    heads = ("ssd0_convpredictor0_conv0_fwd", "ssd0_convpredictor1_conv0_fwd")
    assert float32_candidates(symbol) == [(), heads, ("ssd0_resnetv10_conv0_fwd", *heads)]


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


def test_the_labels_map_scores_detections_against_label_rows_ignoring_padding():
    label = np.array([[10, 10, 50, 50, 0], [-1, -1, -1, -1, -1]], np.float32)
    assert map_against_labels([_image([[0, 0.9, 10, 10, 50, 50]])], [label]) == pytest.approx(1.0)
    assert map_against_labels([_image([[1, 0.9, 10, 10, 50, 50]])], [label]) == pytest.approx(0.0)


@pytest.mark.parametrize("agreement, labels, float32_labels, shortfall", [
    (0.97, 0.70, 0.705, 0.0),         # both goals met
    (0.97, None, None, 0.0),          # no labels: the agreement alone
    (0.94, 0.80, 0.70, 0.01),         # agreement short by 0.01
    (0.99, 0.65, 0.70, 0.04),         # labels' mAP 0.05 below float32: 0.04 beyond the margin
    (0.90, 0.60, 0.70, 0.09),         # the worse of the two
    (None, None, None, 0.95),         # nothing measured: as far as it gets
])
def test_the_shortfall_is_the_worse_of_the_two_goals(agreement, labels, float32_labels,
                                                     shortfall):
    assert Fidelity(agreement, labels, float32_labels).shortfall() == pytest.approx(shortfall)


def test_fixed_float32_layers_are_kept_without_measuring(tmp_path):
    model_dir = export_tiny_model(tmp_path / "model")
    nodes = json.loads((model_dir / SYMBOL_FILE).read_text())["nodes"]
    layer = next(n["name"] for n in nodes if n["op"] == "FullyConnected")  # its one layer
    images = np.random.default_rng(1).uniform(-2, 2, (4, 3, 64, 64)).astype(np.float32)
    entry, _ = write_int8_network(model_dir, images, float32_layers=[layer])
    assert entry.float32_layers == (layer,)
    assert entry.fidelity_map is None and entry.labels_map is None
    assert not meets_fidelity_goals(entry)
    graph = json.loads((model_dir / INT8_SYMBOL_FILE).read_text())
    dense = [n for n in graph["nodes"] if "fully_connected" in n["op"].lower()]
    assert len(dense) == 1 and dense[0].get("attrs", {}).get("quantized", "").lower() != "true", \
        dense  # oneDNN fused it, in float32 (without the exclusion: quantized="True")
