"""evaluation.py: hand-computed edge cases, then differential tests against two independent
implementations on seeded random detections and ground truth.

- GluonCV: `VOC07MApMetric` (11-point) and `VOCMApMetric` (area) must give the same mAP to 1e-6
  on every case: overlapping boxes, difficult flags, duplicates (same box, same or lower score),
  tied scores, empty images, classes with no ground truth (or only difficult ground truth),
  padding rows (id -1), batches split into per-device lists as `validate` sends them.
- pycocotools: COCO's AP at IoU 0.5 (what `stats[1]` reports: area "all", maxDets 100; read
  per class from `eval["precision"]`) is a 101-point
  interpolated AP. It interpolates exactly as VOC07 does (best precision at recall >= each
  point; COCO's envelope + `searchsorted(side="left")` is the same thing), so our matching and
  precision/recall curves, read at COCO's 101 points (`np.linspace(0, 1, 101)`), must give its
  number. COCO's conventions differ from VOC's elsewhere, so the cases are restricted where
  they would differ, leaving an exact comparison (tolerance 1e-9: COCO adds `np.spacing(1)`
  to precision denominators):
  * same-class ground truth boxes in an image are disjoint (COCO lets a detection fall back to
    its next-best unmatched box, VOC does not; a box can overlap two disjoint boxes at IoU
    >= 0.5 only in a measure-zero case);
  * boxes are sent to COCO with width xmax - xmin + 1 (VOC's inclusive pixel ends);
  * scores are distinct (COCO ranks ties stably, GluonCV/VOC by a reversed argsort);
  * at most 100 detections per image (COCO's maxDets);
  * difficult boxes: COCO has no such flag (`iscrowd` changes the IoU), but it ignores ground
    truth outside the area range, and detections matched to it, as VOC ignores difficult
    boxes. So in the difficult cases difficult boxes are small (area < 500 px), every other box
    and every detection not matched to a difficult box is large (>= 1000 px), and the area range
    is [1000, 1e10]: COCO's "ignored" then coincides with VOC's "difficult".
"""

import mxnet as mx
import numpy as np
import pytest
from gluoncv.utils.metrics.voc_detection import VOC07MApMetric, VOCMApMetric

from ssd_sagemaker.evaluation import (
    VOC07_RECALL_POINTS,
    DetectionMAP,
    PrecisionRecall,
    area_average_precision,
    box_iou,
    interpolated_average_precision,
)

COCO_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def _image(boxes, ids, scores, gt_boxes, gt_ids, difficult=None):
    """One image as batch arrays of size 1 (what `update` takes)."""
    def batch(values, width):
        return np.asarray(values, np.float32).reshape(1, -1, width)
    return (batch(boxes, 4), batch(ids, 1), batch(scores, 1), batch(gt_boxes, 4),
            batch(gt_ids, 1), None if difficult is None else batch(difficult, 1))


def _evaluate(*images, iou_threshold=0.5):
    metric = DetectionMAP(iou_threshold)
    for image in images:
        metric.update(*image)
    return metric.result()


# --- hand-computed cases --------------------------------------------------------------------

def test_a_perfect_detection_scores_one():
    result = _evaluate(_image([[10, 10, 50, 50]], [0], [0.9], [[10, 10, 50, 50]], [0]))
    assert (result.voc07, result.area) == (1.0, 1.0)
    assert result.per_class_voc07 == {0: 1.0}


def test_iou_uses_inclusive_pixel_ends_and_the_threshold_is_inclusive():
    # 10x10 pixels (0..9) against 10x5 (0..4): intersection 50, union 100 -> IoU exactly 0.5.
    assert box_iou(np.array([[0, 0, 9, 4]]), np.array([[0, 0, 9, 9]]))[0, 0] == 0.5
    hit = _evaluate(_image([[0, 0, 9, 4]], [0], [0.9], [[0, 0, 9, 9]], [0]))
    assert hit.voc07 == 1.0
    miss = _evaluate(_image([[0, 0, 9, 3]], [0], [0.9], [[0, 0, 9, 9]], [0]))  # IoU 0.4
    assert (miss.voc07, miss.area) == (0.0, 0.0)
    assert _evaluate(_image([[0, 0, 9, 3]], [0], [0.9], [[0, 0, 9, 9]], [0]),
                     iou_threshold=0.4).voc07 == 1.0


def test_a_duplicate_is_a_false_positive_ranked_where_its_score_puts_it():
    # Image A: the object found twice (0.9, then a duplicate at 0.8); image B: found at 0.7.
    # Ranked: TP, FP, TP -> recall .5, .5, 1; precision 1, .5, 2/3.
    a = _image([[0, 0, 20, 20], [0, 0, 20, 20]], [0, 0], [0.9, 0.8], [[0, 0, 20, 20]], [0])
    b = _image([[5, 5, 30, 30]], [0], [0.7], [[5, 5, 30, 30]], [0])
    result = _evaluate(a, b)
    # 11-point: recall points 0..0.5 see precision 1, points 0.6..1 see 2/3.
    assert result.voc07 == pytest.approx((6 * 1 + 5 * 2 / 3) / 11, abs=1e-12)
    assert result.area == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=1e-12)


def test_a_difficult_box_is_neither_a_miss_nor_a_false_positive():
    found = [[0, 0, 20, 20]]
    difficult_box = [[50, 50, 80, 80]]
    # The difficult box is detected first (0.9), the normal one second (0.5): AP 1, as if the
    # difficult box did not exist.
    detected = _image(difficult_box + found, [0, 0], [0.9, 0.5], found + difficult_box, [0, 0],
                      [0, 1])
    assert _evaluate(detected).voc07 == 1.0
    # ...and undetected it costs no recall.
    undetected = _image(found, [0], [0.5], found + difficult_box, [0, 0], [0, 1])
    assert _evaluate(undetected).area == 1.0
    # Not flagged, the same box is a miss: recall stops at 1/2.
    counted = _evaluate(_image(found, [0], [0.5], found + difficult_box, [0, 0], [0, 0]))
    assert (counted.voc07, counted.area) == (pytest.approx(6 / 11), 0.5)


def test_padding_rows_are_ignored():
    plain = _evaluate(_image([[0, 0, 20, 20], [40, 40, 60, 60]], [0, 1], [0.9, 0.3],
                             [[0, 0, 20, 20]], [0]))
    padded = _evaluate(_image([[0, 0, 20, 20], [-1, -1, -1, -1], [40, 40, 60, 60], [0, 0, 5, 5]],
                              [0, -1, 1, -1], [0.9, -1, 0.3, 0.99],
                              [[0, 0, 20, 20], [-1, -1, -1, -1], [0, 0, 5, 5]], [0, -1, -1]))
    assert padded == plain


def test_classes_without_ground_truth_are_left_out_and_missed_classes_count_zero():
    # class 0 found, class 1 missed, class 2 only predicted (no ground truth anywhere),
    # class 3 only difficult ground truth.
    result = _evaluate(_image([[0, 0, 20, 20], [50, 50, 70, 70], [80, 80, 99, 99]], [0, 2, 3],
                              [0.9, 0.8, 0.7],
                              [[0, 0, 20, 20], [30, 30, 45, 45], [80, 80, 99, 99]], [0, 1, 3],
                              [0, 0, 1]))
    assert result.per_class_voc07 == {0: 1.0, 1: 0.0}
    assert result.per_class_area == {0: 1.0, 1: 0.0}
    assert (result.voc07, result.area) == (0.5, 0.5)


def test_detections_on_an_image_without_objects_are_false_positives():
    empty = _image([[0, 0, 20, 20]], [0], [0.95], np.zeros((0, 4)), [])
    found = _image([[0, 0, 20, 20]], [0], [0.5], [[0, 0, 20, 20]], [0])
    result = _evaluate(empty, found)  # ranked FP, TP: precision at recall 1 is 1/2
    assert (result.voc07, result.area) == (0.5, 0.5)


def test_no_ground_truth_at_all_gives_nan_and_reset_forgets():
    metric = DetectionMAP()
    assert np.isnan(metric.result().voc07) and np.isnan(metric.result().area)
    metric.update(*_image([[0, 0, 20, 20]], [0], [0.9], [[0, 0, 20, 20]], [0]))
    assert metric.result().voc07 == 1.0
    metric.reset()
    assert np.isnan(metric.result().voc07)


def test_voc07_recall_points_are_gluoncv_floats():
    # 3 of 10 objects found at precision 1: recall 0.3 falls short of the point
    # 0.30000000000000004, as in GluonCV and the VOC devkit (MATLAB's 0:0.1:1 has it too).
    curve = PrecisionRecall(np.ones(3), np.array([0.1, 0.2, 0.3]))
    assert VOC07_RECALL_POINTS[3] > 0.3
    assert interpolated_average_precision(curve, VOC07_RECALL_POINTS) == pytest.approx(3 / 11)
    assert area_average_precision(curve) == pytest.approx(0.3)


def test_ndarrays_and_per_device_lists_give_the_same_result():
    rng = np.random.default_rng(7)
    batch = _random_batch(rng, images=4, classes=3, width=6)
    whole = DetectionMAP()
    whole.update(*batch)
    devices = [[mx.nd.array(a[:2]), mx.nd.array(a[2:])] for a in batch]
    split = DetectionMAP()
    split.update(*devices)
    assert split.result() == whole.result()
    no_flags = DetectionMAP()
    no_flags.update(*devices[:5], [None, None])  # as validate sends labels without the column
    assert no_flags.result() == _evaluate(batch[:5] + (np.zeros_like(batch[5]),))


def test_validate_in_the_training_loop_reports_both_variants():
    from ssd_sagemaker.training.loop import validate

    class FixedNet:
        """Stands in for the SSD: one correct and one false detection per image."""

        def hybridize(self, **_):
            pass

        def __call__(self, x):
            batch = x.shape[0]
            ids = mx.nd.array([[[0], [1]]] * batch)
            scores = mx.nd.array([[[0.9], [0.8]]] * batch)
            boxes = mx.nd.array([[[10, 10, 40, 40], [50, 50, 90, 90]]] * batch)
            return ids, scores, boxes

    labels = mx.nd.array([[[10, 10, 40, 40, 0, 0], [-1, -1, -1, -1, -1, -1]]] * 4)
    batches = [(mx.nd.zeros((4, 3, 100, 100)), labels)]
    result = validate(FixedNet(), batches, [mx.cpu(0), mx.cpu(1)], DetectionMAP())
    assert (result.voc07, result.area) == (1.0, 1.0)  # class 1 has no ground truth


# --- differential: GluonCV ------------------------------------------------------------------

def _random_batch(rng, images, classes, width, integer=False, ties=False, difficult_rate=0.2):
    """Padded arrays for `images` images (detections and ground truth up to `width` rows):
    boxes near objects (right or wrong class), exact duplicates, random boxes, empty images,
    padding. Class `classes - 1` never has ground truth."""
    shape = (images, width)
    boxes, ids = np.full(shape + (4,), -1.0), np.full(shape, -1.0)
    scores = np.full(shape, -1.0)
    gt_boxes, gt_ids = np.full(shape + (4,), -1.0), np.full(shape, -1.0)
    difficult = np.zeros(shape)
    for i in range(images):
        kind = rng.integers(6)
        objects = 0 if kind == 0 else int(rng.integers(0, width + 1))
        corner = rng.uniform(0, 250, (objects, 2))
        size = rng.uniform(8, 120, (objects, 2))
        gt = np.concatenate([corner, corner + size], axis=1)
        if integer:
            gt = np.round(gt)
        gt_boxes[i, :objects] = gt
        gt_ids[i, :objects] = rng.integers(0, max(1, classes - 1), objects)
        difficult[i, :objects] = rng.uniform(size=objects) < difficult_rate
        found = [] if kind in (0, 1) else _detections(rng, gt, gt_ids[i, :objects], classes,
                                                      width, integer)
        for row, (box, class_id) in enumerate(found):
            boxes[i, row], ids[i, row] = box, class_id
        scores[i, :len(found)] = (np.round(rng.uniform(size=len(found)), 1) if ties
                                  else rng.uniform(size=len(found)))
        for row in range(1, len(found)):  # some duplicates keep the same score
            for earlier in range(row):
                if np.array_equal(boxes[i, row], boxes[i, earlier]) and rng.uniform() < 0.5:
                    scores[i, row] = scores[i, earlier]
    f32 = lambda a: a.astype(np.float32)  # noqa: E731 - what the network gives
    return (f32(boxes), f32(ids[..., None]), f32(scores[..., None]), f32(gt_boxes),
            f32(gt_ids[..., None]), f32(difficult[..., None]))


def _detections(rng, gt, gt_ids, classes, width, integer):
    found = []
    for box, class_id in zip(gt, gt_ids):
        if rng.uniform() < 0.25:
            continue  # missed
        jitter = rng.normal(0, 0.15, 4) * np.tile(box[2:] - box[:2], 2)
        candidate = box + jitter
        candidate[2:] = np.maximum(candidate[2:], candidate[:2] + 1)
        label = class_id if rng.uniform() < 0.85 else rng.integers(classes)
        found.append((np.round(candidate) if integer else candidate, label))
        if rng.uniform() < 0.3:
            found.append(found[-1])  # an exact duplicate
    for _ in range(int(rng.integers(0, 3))):
        corner = rng.uniform(0, 250, 2)
        box = np.concatenate([corner, corner + rng.uniform(8, 120, 2)])
        found.append((np.round(box) if integer else box, rng.integers(classes)))
    order = rng.permutation(len(found))[:width]
    return [found[k] for k in order]


def _gluoncv_maps(batches, iou_threshold):
    eleven, area = VOC07MApMetric(iou_threshold), VOCMApMetric(iou_threshold)
    for batch in batches:
        eleven.update(*batch)
        area.update(*batch)
    if not eleven._n_pos:  # nothing but empty images: GluonCV fails (max() of nothing)
        return float("nan"), float("nan")
    return eleven.get()[1], area.get()[1]


@pytest.mark.parametrize("seed", range(60))
def test_equals_gluoncv_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    iou_threshold = float(rng.choice([0.5, 0.5, 0.3, 0.7]))
    batches = [_random_batch(rng, images=int(rng.integers(1, 6)),
                             classes=int(rng.integers(2, 6)), width=int(rng.integers(1, 9)),
                             integer=seed % 3 == 0, ties=seed % 4 == 0,
                             difficult_rate=0.0 if seed % 5 == 0 else 0.25)
               for _ in range(int(rng.integers(1, 5)))]
    ours = DetectionMAP(iou_threshold)
    for batch in batches:
        ours.update(*batch)
    result = ours.result()
    eleven, area = _gluoncv_maps(batches, iou_threshold)
    if np.isnan(eleven):
        assert np.isnan(result.voc07) and np.isnan(result.area)
        return
    assert result.voc07 == pytest.approx(eleven, abs=1e-6)
    assert result.area == pytest.approx(area, abs=1e-6)


def test_the_random_cases_cover_what_they_claim():
    """The generator really produces the situations the differential tests are meant to hit,
    and the mAPs spread over the range (not all 0 or 1)."""
    seen = dict(empty=0, duplicates=0, difficult=0, ties=0, padding=0, classless=0)
    maps = []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        batch = _random_batch(rng, 5, 4, 8, ties=seed % 4 == 0)
        boxes, ids, scores, gt_boxes, gt_ids, difficult = batch
        seen["empty"] += int(np.sum(np.all(gt_ids < 0, axis=(1, 2)) & np.all(ids < 0, axis=(1, 2))))
        seen["difficult"] += int(difficult.sum())
        seen["padding"] += int(np.sum(gt_ids < 0))
        seen["classless"] += int(np.any(ids == 3))
        for i in range(boxes.shape[0]):
            valid = boxes[i][ids[i, :, 0] >= 0]
            seen["duplicates"] += len(valid) - len(np.unique(valid, axis=0))
            valid_scores = scores[i][ids[i] >= 0]
            seen["ties"] += len(valid_scores) - len(np.unique(valid_scores))
        maps.append(_evaluate(batch).voc07)
    assert all(count >= 5 for count in seen.values()), seen
    maps = np.array(maps)[np.isfinite(maps)]
    assert 0.2 < maps.mean() < 0.9 and maps.std() > 0.05


# --- differential: pycocotools --------------------------------------------------------------

AREA_FLOOR = 1000.0  # px²: difficult boxes are below half of it, everything else above


def _coco_case(rng, difficult):
    """Images as lists of (gt boxes, gt classes, gt difficult, det boxes, det classes, scores),
    the restrictions of the module docstring applied."""
    cells = [(x * 130.0, y * 130.0) for x in range(3) for y in range(3)]
    images = []
    for _ in range(int(rng.integers(1, 7))):
        gt, gt_cls, gt_diff, det, det_cls = [], [], [], [], []
        for cell in rng.permutation(len(cells))[:int(rng.integers(0, 7))]:
            hard = difficult and rng.uniform() < 0.3
            side = rng.uniform(8, 18, 2) if hard else rng.uniform(50, 120, 2)
            corner = np.array(cells[cell]) + rng.uniform(0, 128 - side)
            box = np.concatenate([corner, corner + side])
            gt.append(box)
            gt_cls.append(int(rng.integers(3)))
            gt_diff.append(hard)
            for _copy in range(int(rng.choice([0, 1, 1, 2]))):  # missed, found, duplicated
                candidate = box + rng.normal(0, 0.12, 4) * np.tile(side, 2)
                candidate[2:] = np.maximum(candidate[2:], candidate[:2] + 2)
                iou = box_iou(candidate[None], box[None])[0, 0]
                if hard and iou < 0.5:
                    continue  # a small detection must be one COCO and VOC both ignore
                if not hard and np.prod(candidate[2:] - candidate[:2] + 1) < AREA_FLOOR:
                    continue
                det.append(candidate)
                det_cls.append(gt_cls[-1] if rng.uniform() < 0.9 or hard else int(rng.integers(3)))
        for _ in range(int(rng.integers(0, 4))):  # false alarms anywhere, large
            corner = rng.uniform(0, 300, 2)
            det.append(np.concatenate([corner, corner + rng.uniform(40, 100, 2)]))
            det_cls.append(int(rng.integers(3)))
        scores = rng.permutation(np.linspace(0.01, 0.99, 500))[:len(det)] + rng.uniform(0, 1e-3)
        images.append((np.array(gt).reshape(-1, 4), np.array(gt_cls), np.array(gt_diff, bool),
                       np.array(det).reshape(-1, 4), np.array(det_cls), scores))
    return images


def _coco_ap50(images, difficult):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box):  # VOC's inclusive ends: width = xmax - xmin + 1
        return [float(box[0]), float(box[1]), float(box[2] - box[0] + 1),
                float(box[3] - box[1] + 1)]

    annotations, results = [], []
    for image_id, (gt, gt_cls, _gt_diff, det, det_cls, scores) in enumerate(images, 1):
        for box, class_id in zip(gt, gt_cls):
            wh = xywh(box)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(class_id) + 1, "bbox": wh,
                                "area": wh[2] * wh[3], "iscrowd": 0})
        results += [{"image_id": image_id, "category_id": int(c) + 1, "bbox": xywh(b),
                     "score": float(s)} for b, c, s in zip(det, det_cls, scores)]
    truth = COCO()
    truth.dataset = {"images": [{"id": i} for i in range(1, len(images) + 1)],
                     "annotations": annotations,
                     "categories": [{"id": c} for c in (1, 2, 3)]}
    truth.createIndex()
    evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
    if difficult:
        evaluation.params.areaRng = [[AREA_FLOOR, 1e10]]
        evaluation.params.areaRngLbl = ["large-enough"]
    evaluation.params.iouThrs = np.array([0.5])
    evaluation.params.maxDets = [100]
    evaluation.evaluate()
    evaluation.accumulate()
    precision = evaluation.eval["precision"][0, :, :, 0, 0]  # recall points x classes
    per_class = {k: float(precision[:, k].mean()) for k in range(3) if precision[0, k] > -1}
    return per_class


@pytest.mark.parametrize("difficult", [False, True], ids=["plain", "difficult-as-ignored"])
@pytest.mark.parametrize("seed", range(20))
def test_agrees_with_pycocotools_ap50(seed, difficult):
    rng = np.random.default_rng(1000 + seed)
    images = _coco_case(rng, difficult)
    if not any(len(image[3]) for image in images):
        pytest.skip("this seed drew no detection at all (COCO's loadRes needs one)")
    ours = DetectionMAP(0.5)
    for gt, gt_cls, gt_diff, det, det_cls, scores in images:
        ours.add_image(det, det_cls, scores, gt, gt_cls, gt_diff)
    coco = _coco_ap50(images, difficult)
    mine = {c: interpolated_average_precision(curve, COCO_RECALL_POINTS)
            for c, curve in ours.curves().items()}
    assert mine.keys() == coco.keys()
    for class_id in coco:
        assert mine[class_id] == pytest.approx(coco[class_id], abs=1e-9)
