"""TensorBoard events of a training run in `$SAGEMAKER_BASE_DIR/output/tensorboard` (the folder
SageMaker syncs with `TensorBoardOutputConfig`), written by tensorboardX (no TensorFlow): per
epoch the loss parts, learning rate, mAPs, per-class AP and images/s, and a few validation
images with the epoch's detections drawn. Master host only; a folder that cannot be written
turns the events off with one warning, never the job."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np

from ssd_sagemaker.data.channels import TrainingData
from ssd_sagemaker.data.loading.batch_work import BadSample, load
from ssd_sagemaker.serving.predictor import network_detections
from ssd_sagemaker.serving.rendering import draw_detections

LOG = logging.getLogger(__name__)

TENSORBOARD_FOLDER = "tensorboard"
PICTURED_IMAGES = 2  # validation images drawn with their detections each epoch
PICTURED_SCORE = 0.5  # detections drawn score at least this

# metrics-row field → TensorBoard tag
SCALARS = {"cross_entropy": "loss/cross_entropy", "smooth_l1": "loss/smooth_l1",
           "learning_rate": "learning_rate", "validation_map": "validation/mAP",
           "validation_map_area": "validation/mAP_area",
           "images_per_second": "throughput/images_per_second"}


class TensorBoardLog:
    """The run's event file; `pictured` are (name, HWC RGB uint8 image) validation images."""

    def __init__(self, writer: Any, pictured: Sequence[tuple[str, np.ndarray]] = ()):
        self._writer = writer
        self.pictured = list(pictured)

    def epoch(self, row: dict) -> None:
        """One epoch's row of the metrics files, as scalars at step `epoch`."""
        step = row["epoch"]
        try:
            for field, tag in SCALARS.items():
                if row.get(field) is not None:
                    self._writer.add_scalar(tag, row[field], step)
            for name, ap in (row.get("validation_ap_per_class") or {}).items():
                self._writer.add_scalar(f"validation_AP/{name}", ap, step)
            self._writer.flush()
        except OSError as error:
            self._off(error)

    def detections(self, epoch: int, net: Any, image_shape: int, context: mx.Context,
                   classes: Sequence[str]) -> None:
        """The pictured images with `net`'s detections (inference mode) drawn."""
        try:
            for name, image in self.pictured:
                rows = [row for row in network_detections(net, image, image_shape, context)
                        if row[1] >= PICTURED_SCORE]
                self._writer.add_image(f"validation/{name}",
                                       draw_detections(image, rows, classes), epoch,
                                       dataformats="HWC")
            self._writer.flush()
        except OSError as error:
            self._off(error)

    def _off(self, error: OSError) -> None:
        LOG.warning("TensorBoard events stop: cannot write them (%s)", error.strerror or error)
        self._writer = _NoWriter()
        self.pictured = []

    def close(self) -> None:
        try:
            self._writer.close()
        except OSError:
            pass


class _NoWriter:
    """Stands in for the writer once writing failed."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _pictured(data: TrainingData) -> list[tuple[str, np.ndarray]]:
    """The first usable validation images (of a File-mode channel: the caller says); one that
    cannot be used is passed over here and counted when validation loads it."""
    if data.validation is None:
        return []
    pictured: list[tuple[str, np.ndarray]] = []
    for sample in data.validation.validation_pass():
        if len(pictured) == PICTURED_IMAGES:
            break
        try:
            pictured.append((Path(sample.origin).stem, load(sample)[0]))
        except BadSample:
            continue
    return pictured


def open_tensorboard(output_dir: Path, data: TrainingData,
                     picture_validation: bool) -> TensorBoardLog | None:
    """The run's TensorBoard log in `output_dir/tensorboard` (for the master host), or None:
    the folder cannot be written (one warning). `picture_validation`: the validation channel
    is read in File mode (a Pipe-mode stream is read once per epoch by validation alone), so
    its first images are drawn with each epoch's detections."""
    folder = output_dir / TENSORBOARD_FOLDER
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
        writer = EventWriter(folder)
    except OSError as error:
        LOG.warning("no TensorBoard events: cannot write %s (%s)", folder,
                    error.strerror or error)
        return None
    LOG.info("TensorBoard events in %s", folder)
    return TensorBoardLog(writer, _pictured(data) if picture_validation else [])


class EventWriter:
    """The event file, written in the calling thread: tensorboardX's SummaryWriter writes from a
    thread of its own and closes at exit, so a full disk became tracebacks from that thread and
    from `atexit` instead of the one warning of `TensorBoardLog._off` (measured on a full tmpfs)."""

    def __init__(self, folder: Path):
        from tensorboardX.event_file_writer import EventsWriter

        self._events = EventsWriter(str(folder / "events"))

    def _add(self, summary: Any, step: int) -> None:
        from tensorboardX.proto import event_pb2

        self._events.write_event(event_pb2.Event(summary=summary, step=step,
                                                 wall_time=time.time()))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        from tensorboardX import summary

        self._add(summary.scalar(tag, float(value)), step)

    def add_image(self, tag: str, image: np.ndarray, step: int, dataformats: str = "HWC") -> None:
        from tensorboardX import summary

        self._add(summary.image(tag, image, dataformats=dataformats), step)

    def flush(self) -> None:
        self._events.flush()

    def close(self) -> None:
        self._events.close()
