"""evaluate/coco.py: the figures are pycocotools' own on the two documents written to disk, and
the documents are COCO's formats (pixels of the image, [x, y, w, h])."""

import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ssd_sagemaker.evaluate.coco import (
    STAT_NAMES,
    coco_scores,
    detections_document,
    ground_truth_document,
)
from ssd_sagemaker.evaluate.images import EvaluatedImage

CLASSES = ("circle", "square", "triangle")


def _images(seed=0, count=6):
    """Images with 1-4 objects each and detections near them (jittered, some wrong class, some
    spurious), sizes differing so that fractions map to different pixels."""
    rng = np.random.default_rng(seed)
    images = []
    for index in range(count):
        width, height = int(rng.integers(200, 640)), int(rng.integers(200, 480))
        objects = int(rng.integers(1, 5))
        corner = rng.uniform(0, 0.6, (objects, 2))
        size = rng.uniform(0.05, 0.4, (objects, 2))
        truth = np.hstack([corner, np.minimum(corner + size, 1.0)])
        ids = rng.integers(0, 2, objects)  # the third class never appears
        rows = []
        for box, class_id in zip(truth, ids):
            jitter = np.clip(box + rng.normal(0, 0.02, 4), 0, 1)
            predicted = class_id if rng.random() < 0.8 else 2
            rows.append([predicted, rng.uniform(0.2, 1.0), *jitter])
        rows.append([rng.integers(0, 3), rng.uniform(0, 0.5), 0.1, 0.1, 0.3, 0.35])
        detections = np.asarray(rows, dtype=np.float64)
        images.append(EvaluatedImage(f"image_{index}.jpg", width, height, truth, ids,
                                     np.zeros(objects, bool),
                                     detections[np.argsort(-detections[:, 1])]))
    return images


def test_figures_equal_pycocotools_on_the_written_files(tmp_path):
    images = _images()
    truth, detections = ground_truth_document(images, CLASSES), detections_document(images)
    (tmp_path / "ground_truth.json").write_text(json.dumps(truth))
    (tmp_path / "detections.json").write_text(json.dumps(detections))
    ours = coco_scores(truth, detections)

    ground = COCO(str(tmp_path / "ground_truth.json"))
    evaluation = COCOeval(ground, ground.loadRes(str(tmp_path / "detections.json")), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    for name, value in zip(STAT_NAMES, evaluation.stats):
        if value < 0:
            assert ours.stats[name] is None, name
        else:
            assert ours.stats[name] == pytest.approx(value, abs=1e-4), name
    assert 0.2 < ours.stats["coco_map"] < 0.9  # a real score, neither nothing nor perfect
    # per class: pycocotools restricted to that category
    for class_id in (0, 1):
        evaluation.params.catIds = [class_id]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
        assert ours.per_class[class_id] == pytest.approx(evaluation.stats[0], abs=1e-4)
    assert ours.per_class[2] is None  # no ground truth of that class


def test_documents_are_in_the_images_pixels():
    image = EvaluatedImage("a.jpg", 400, 200, np.array([[0.25, 0.5, 0.75, 1.0]]), np.array([1]),
                           np.zeros(1, bool), np.array([[1, 0.9, 0.25, 0.5, 0.5, 0.75]]))
    truth = ground_truth_document([image], CLASSES)
    assert truth["images"] == [{"id": 1, "file_name": "a.jpg", "width": 400, "height": 200}]
    assert truth["annotations"][0]["bbox"] == [100.0, 100.0, 200.0, 100.0]
    assert truth["annotations"][0]["area"] == 20000.0
    assert truth["categories"][1] == {"id": 1, "name": "square"}
    assert detections_document([image]) == [
        {"image_id": 1, "category_id": 1, "bbox": [100.0, 100.0, 100.0, 50.0], "score": 0.9}]


def test_no_detection_scores_zero_where_there_is_ground_truth():
    images = [EvaluatedImage("a.jpg", 400, 400, np.array([[0.1, 0.1, 0.9, 0.9]]), np.array([0]),
                             np.zeros(1, bool), np.zeros((0, 6)))]
    scores = coco_scores(ground_truth_document(images, CLASSES), [])
    assert scores.stats["coco_map"] == 0.0 and scores.stats["ap_large"] == 0.0
    assert scores.stats["ap_small"] is None and scores.stats["ap_medium"] is None
    assert scores.per_class == {0: 0.0, 1: None, 2: None}
