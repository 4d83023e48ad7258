"""evaluate/images.py: batch-transform answers are read by image name, and bad ones are named."""

import json
from pathlib import Path

import numpy as np
import pytest

from ssd_sagemaker.data.checks.samples import Sample
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.evaluate.images import answer_rows, read_answers


def _sample(folder: Path, name: str) -> Sample:
    import cv2

    path = folder / name
    cv2.imwrite(str(path), np.zeros((40, 60, 3), np.uint8))
    return Sample(f"validation/{name}", path, np.array([[0.1, 0.2, 0.5, 0.6]], np.float32),
                  np.array([1], np.int32))


@pytest.mark.parametrize("content, named", [
    (b"\xff\xfe not json", "is not JSON"),
    (b'{"predictions": []}', 'has no "prediction" list'),
    (b'{"prediction": [[0, 0.5, 0.1, 0.1, 0.2]]}', "prediction 0 is [0, 0.5, 0.1, 0.1, 0.2]"),
    (b'{"prediction": [[0, 0.5, 0.1, 0.1, 0.2, NaN]]}', "prediction 0 is"),
    (b'{"prediction": [[0, 0.5, 0, 0, 1, 1], [-1, 0.5, 0, 0, 1, 1]]}',
     "prediction 1 has class_id -1"),
    (b'{"prediction": [[1.5, 0.5, 0, 0, 1, 1]]}', "prediction 0 has class_id 1.5"),
])
def test_a_bad_answer_is_named_with_its_file(tmp_path, content, named):
    path = tmp_path / "a.jpg.out"
    path.write_bytes(content)
    with pytest.raises(ClientError) as raised:
        answer_rows(path)
    assert str(path) in str(raised.value) and named in str(raised.value)


def test_answers_are_matched_by_image_name(tmp_path):
    samples = [_sample(tmp_path, "b.jpg"), _sample(tmp_path, "a.jpg")]
    answers = tmp_path / "out"
    answers.mkdir()
    (answers / "a.jpg.out").write_text(json.dumps({"prediction": [
        [1, 0.2, 0, 0, 0.1, 0.1], [1, 0.9, 0.1, 0.2, 0.5, 0.6]]}))
    (answers / "b.jpg.out").write_text(json.dumps({"prediction": []}))
    (answers / "stray.jpg.out").write_text("{}")
    b, a = read_answers(answers, samples)
    assert (a.name, a.width, a.height) == ("a.jpg", 60, 40)
    assert a.detections[:, 1].tolist() == [0.9, 0.2]  # best first
    assert b.detections.shape == (0, 6)
    assert a.truth_ids.tolist() == [1]


def test_missing_answers_are_listed(tmp_path):
    samples = [_sample(tmp_path, f"{i}.jpg") for i in range(7)]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "0.jpg.out").write_text('{"prediction": []}')
    with pytest.raises(ClientError) as raised:
        read_answers(tmp_path / "out", samples)
    message = str(raised.value)
    assert "lacks the answers to 6 of 7 images: 1.jpg.out, 2.jpg.out" in message
    assert "0.jpg.out" not in message
