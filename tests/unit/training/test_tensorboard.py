"""training/tensorboard.py: the epoch's scalars read back by TensorBoard's own event reader;
a folder that cannot be written turns the events off with one warning; the pictured validation
images pass over one the loader refuses."""

import logging
from types import SimpleNamespace

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboardX import SummaryWriter

from planting import corrupt_jpeg, jpeg
from ssd_sagemaker.data.checks.samples import Sample
from ssd_sagemaker.training.tensorboard import TensorBoardLog, _pictured, open_tensorboard


def _row(epoch, validated=True):
    return {"epoch": epoch, "cross_entropy": 2.0 / (epoch + 1), "smooth_l1": 0.5,
            "validation_map": 0.25 * epoch if validated else None,
            "validation_map_area": 0.3 if validated else None,
            "validation_ap_per_class": {"circle": 0.1 * epoch, "square": 0.5} if validated
            else None, "learning_rate": 0.001, "images_per_second": 3.5, "seconds": 9.0}


def test_tensorboard_reads_back_every_scalar_of_every_epoch(tmp_path):
    log = TensorBoardLog(SummaryWriter(logdir=str(tmp_path)))
    for epoch in range(3):
        log.epoch(_row(epoch, validated=epoch != 1))
    log.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {
        "loss/cross_entropy", "loss/smooth_l1", "learning_rate", "validation/mAP",
        "validation/mAP_area", "throughput/images_per_second", "validation_AP/circle",
        "validation_AP/square"}
    assert [(e.step, e.value) for e in events.Scalars("loss/cross_entropy")] == [
        (0, 2.0), (1, 1.0), (2, pytest.approx(2 / 3))]
    assert [(e.step, e.value) for e in events.Scalars("validation_AP/circle")] == [
        (0, 0.0), (2, pytest.approx(0.2))]


def test_an_unwritable_folder_turns_the_events_off_with_one_warning(tmp_path, caplog):
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "tensorboard").write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING):
        assert open_tensorboard(tmp_path / "output", None, picture_validation=False) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no TensorBoard events: cannot write" in warnings[0]
    assert str(tmp_path / "output" / "tensorboard") in warnings[0]


def test_the_pictured_validation_images_pass_over_one_the_loader_refuses(tmp_path):
    """Images are checked as they are used: a corrupt one among the first is not drawn (the
    validation pass counts it), the next usable one is."""
    samples = []
    for index in range(4):
        path = tmp_path / f"{index}.jpg"
        path.write_bytes(corrupt_jpeg() if index == 0 else jpeg(64, 48, seed=index))
        samples.append(Sample(f"validation/{index}.jpg", path, np.zeros((0, 4), np.float32),
                              np.zeros(0, np.int32)))
    data = SimpleNamespace(validation=SimpleNamespace(validation_pass=lambda: iter(samples)))
    pictured = _pictured(data)
    assert [(name, image.shape) for name, image in pictured] == [("1", (48, 64, 3)),
                                                                ("2", (48, 64, 3))]
