"""evaluate/confusion.py: counts of hits, confusions, false alarms and misses."""

import numpy as np

from ssd_sagemaker.evaluate.confusion import confusion_matrix


def test_hits_confusions_false_alarms_and_misses_are_counted():
    truth = np.array([[0, 0, 99, 99], [200, 200, 299, 299], [400, 0, 499, 99]], float)
    ids = np.array([0, 1, 1])
    rows = np.array([
        [0, 0.9, 0, 0, 99, 99],          # circle found as circle
        [0, 0.8, 1, 1, 99, 99],          # a duplicate: the circle is taken -> false alarm
        [2, 0.7, 200, 200, 299, 299],    # square taken for a triangle
        [1, 0.6, 600, 600, 699, 699],    # nothing there -> false alarm
        [1, 0.3, 400, 0, 499, 99],       # below the score threshold: not counted, so missed
    ], float)
    counts = confusion_matrix([(truth, ids, rows)], 3, iou_threshold=0.5, score_threshold=0.5)
    expected = np.zeros((4, 4), int)
    expected[0, 0] = 1
    expected[3, 0] = 1
    expected[1, 2] = 1
    expected[3, 1] = 1
    expected[1, 3] = 1  # the square at (400, 0) is missed
    assert counts.tolist() == expected.tolist()


def test_an_image_without_detections_or_objects():
    empty = (np.zeros((0, 4)), np.zeros(0, int), np.zeros((0, 6)))
    one = (np.array([[0, 0, 9, 9]], float), np.array([2]), np.zeros((0, 6)))
    counts = confusion_matrix([empty, one], 3)
    assert counts[2, 3] == 1 and counts.sum() == 1
