"""training/tensorboard.py: the epoch's scalars read back by TensorBoard's own event reader;
a folder that cannot be written turns the events off with one warning."""

import logging

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboardX import SummaryWriter

from ssd_sagemaker.training.tensorboard import TensorBoardLog, open_tensorboard


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
