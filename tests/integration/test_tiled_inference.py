"""Tiled inference on a detector that detects: a ResNet-50 SSD fitted at 128 px to 8 synthetic
images (tests/support/fitted_model.py: the INT8 fidelity test's fit, made once per run),
asked about a mosaic of the same 8 images, 3 a row: whole, the mosaic shrinks each object
about 3x and the detector finds less than half of what it finds in the images one by one; tiled,
boxes are fractions of the whole mosaic, and `/invocations` with `tile=,overlap=` answers what
`predict --tile --tile-overlap` writes.

Recall against one-by-one is measured on the demo's model and unseen images by bench/tiling.py
(docs/tiling.md: 1.00 of one-by-one): a detector fitted in minutes knows its 8 whole images
only, and finds 1 of 17 objects in tiles that cut across them (measured), and boxes one object
twice with junk from such tiles, so neither recall nor duplicates are asserted here: the
mechanics (grid, mapping, merge, seams, duplicates) are in tests/unit/serving/test_tiling.py,
and the demo model's duplicates in docs/tiling.md."""

import base64
import json
import shutil

import cv2
import pytest
import requests

from cli_runner import run_cli
from fitted_model import EIGHT_IMAGES
from mosaic import make_mosaic, recall
from serve_process import Server
from ssd_sagemaker.serving.config import DetectionLimits
from ssd_sagemaker.serving.predictor import Predictor
from ssd_sagemaker.serving.tiling import detect_tiled

pytestmark = pytest.mark.slow
GRID, COUNT, SEED = 3, EIGHT_IMAGES["count"], EIGHT_IMAGES["seed"]
TILE, OVERLAP = 320, 0.5
SCORE = 0.5


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, eight_image_detector):
    """The opt_ml tree with the fitted model, and the mosaic of its 8 images."""
    base = tmp_path_factory.mktemp("opt_ml")
    fitted_model, _, _, reached = eight_image_detector
    shutil.copytree(fitted_model, base / "model")
    assert reached >= 0.9, f"the detector did not fit (mAP {reached:.3f}): nothing to tile"
    return base, make_mosaic(base / "mosaic", GRID, SEED, COUNT, plain=False)


def test_the_whole_mosaic_loses_objects_and_tiles_answer_for_the_whole_mosaic(fitted):
    base, mosaic = fitted
    predictor = Predictor(base / "model")
    height, width = mosaic.image.shape[:2]
    size = (width, height)
    alone = [row for part, offset in zip(mosaic.parts, mosaic.offsets)
             for row in mosaic.to_mosaic_rows(predictor.detect(part), part, offset)]
    tiled = detect_tiled(predictor, mosaic.image, DetectionLimits(tile=TILE, tile_overlap=OVERLAP))
    one_by_one = recall(alone, mosaic.labels, SCORE, size)
    assert one_by_one >= 0.8, one_by_one  # the detector detects
    whole = recall(predictor.detect(mosaic.image), mosaic.labels, SCORE, size)
    found = recall(tiled, mosaic.labels, SCORE, size)
    assert whole < one_by_one / 2, (whole, one_by_one)
    assert found >= whole, (found, whole)
    assert all(0 <= value <= 1 for row in tiled for value in row[2:])


def test_invocations_with_the_attribute_answer_what_predict_tile_writes(fitted, tmp_path):
    base, mosaic = fitted
    path = tmp_path / "mosaic.png"
    cv2.imwrite(str(path), cv2.cvtColor(mosaic.image, cv2.COLOR_RGB2BGR))
    ran = run_cli(base, "predict", str(path), "--model-dir", str(base / "model"), "--output",
                  str(tmp_path / "out"), "--tile", str(TILE), "--tile-overlap", str(OVERLAP))
    assert ran.returncode == 0, ran.stdout
    written = json.loads((tmp_path / "out" / "mosaic.json").read_text())["prediction"]
    assert (tmp_path / "out" / "mosaic.annotated.jpg").stat().st_size > 0
    untiled = run_cli(base, "predict", str(path), "--model-dir", str(base / "model"),
                      "--output", str(tmp_path / "whole"))
    assert untiled.returncode == 0, untiled.stdout
    server = Server(base, SAGEMAKER_MODEL_SERVER_WORKERS="1").wait_ready()
    try:
        def invoke(attributes: str, body: bytes | str | None = None,
                   content_type: str = "image/png") -> requests.Response:
            return requests.post(f"{server.url}/invocations",
                                 data=path.read_bytes() if body is None else body,
                                 headers={"Content-Type": content_type,
                                          "X-Amzn-SageMaker-Custom-Attributes": attributes},
                                 timeout=120)

        answer = invoke(f"tile={TILE},overlap={OVERLAP}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["prediction"] == [pytest.approx(row, abs=1e-5) for row in written]
        line = json.dumps({"image": base64.b64encode(path.read_bytes()).decode(), "id": "m"})
        batch = invoke(f"tile={TILE},overlap={OVERLAP}", "\n".join([line, line]),
                       "application/jsonlines")  # batch transform's request, tiled too
        assert batch.status_code == 200, batch.text
        assert [json.loads(row)["prediction"] for row in batch.text.split("\n")] == [
            [pytest.approx(row, abs=1e-5) for row in written]] * 2
        whole = json.loads((tmp_path / "whole" / "mosaic.json").read_text())["prediction"]
        assert written != whole  # the attribute changed what was found
        refused = invoke("tile=32,overlap=0.9")
        assert refused.status_code == 400
        assert "tiles, above the limit of 256 (SSD_MAX_TILES)" in refused.json()["error"]
        bad = invoke("tile=320,overlap=2")
        assert bad.status_code == 400
        assert "tile_overlap='2' is invalid" in bad.json()["error"]
    finally:
        server.stop()
