"""Tiled inference through every entry point, on a detector that finds objects it never saw
(tests/support/small_detector.py, fitted once per run): `/invocations` with `tile=,overlap=`
answers what `predict --tile --tile-overlap` writes, for an image and for a JSON Lines batch,
the tiled answer differs from the whole image's, and bad or too fine tilings are 400s naming
the fix. What the tiles find (recall against the images one by one, objects boxed twice,
fractions of the whole image) is judged in test_tiled_recall.py; the merge's rules on
constructed boxes in tests/unit/serving/test_tile_merge.py."""

import base64
import json
import shutil

import cv2
import pytest
import requests

from cli_runner import run_cli
from mosaic import make_mosaic, recall
from serve_process import Server

pytestmark = pytest.mark.slow
GRID, COUNT, SEED = 3, 8, 3
TILE, OVERLAP = 320, 0.5
SCORE = 0.5


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, small_detector):
    """The opt_ml tree with the fitted model, and a mosaic of 8 images it never saw."""
    base = tmp_path_factory.mktemp("opt_ml")
    shutil.copytree(small_detector.model_dir, base / "model")
    return base, make_mosaic(base / "mosaic", GRID, SEED, COUNT)


def test_invocations_with_the_attribute_answer_what_predict_tile_writes(fitted, tmp_path):
    base, mosaic = fitted
    path = tmp_path / "mosaic.png"
    cv2.imwrite(str(path), cv2.cvtColor(mosaic.image, cv2.COLOR_RGB2BGR))
    ran = run_cli(base, "predict", str(path), "--model-dir", str(base / "model"), "--output",
                  str(tmp_path / "out"), "--tile", str(TILE), "--tile-overlap", str(OVERLAP))
    assert ran.returncode == 0, ran.stdout
    written = json.loads((tmp_path / "out" / "mosaic.json").read_text())["prediction"]
    height, width = mosaic.image.shape[:2]
    assert recall(written, mosaic.labels, SCORE, (width, height)) >= 0.8  # what is compared
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
