"""The File-mode readers called as tests call them: a fresh report named after the channel's
folder and the job's numbers put into the one `ReadContext` the readers take."""

from __future__ import annotations

from pathlib import Path

from ssd_sagemaker.data.checks.report import ChannelReport
from ssd_sagemaker.data.formats import image_json, manifest, recordio
from ssd_sagemaker.data.formats.protocol import FileChannel, ReadContext

LABEL_WIDTH = 350  # the hyperparameter's default


def read_images(image_dir: Path, annotation_dir: Path, num_classes: int, thorough: bool = False,
                channel: str | None = None, defer_images: bool = False) -> FileChannel:
    report = ChannelReport(channel or Path(image_dir).name, image_json.KIND)
    return image_json.read_annotated_channel(
        image_dir, annotation_dir, ReadContext(report, num_classes, LABEL_WIDTH, thorough,
                                               defer_images=defer_images))


def read_records(channel_dir: Path, num_classes: int, label_width: int = LABEL_WIDTH,
                 thorough: bool = False, defer_images: bool = False) -> FileChannel:
    report = ChannelReport(Path(channel_dir).name, recordio.KIND)
    return recordio.read_recordio_channel(
        channel_dir, ReadContext(report, num_classes, label_width, thorough,
                                 defer_images=defer_images))


def read_manifest(channel_dir: Path, attributes: manifest.Attributes,
                  num_classes: int) -> FileChannel:
    report = ChannelReport(Path(channel_dir).name, manifest.KIND)
    return manifest.read_manifest_channel(
        channel_dir, attributes, ReadContext(report, num_classes, LABEL_WIDTH))
