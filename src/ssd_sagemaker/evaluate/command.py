"""`ssd-sagemaker evaluate`: read a labelled channel as `train` reads it, get the detections
(from the model through the serving predictor, or from a folder of batch-transform answers),
score them and write the report (`report.py`) and plots (`plots.py`) to the output folder."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ssd_sagemaker.data.channels import read_file_channel
from ssd_sagemaker.data.checks.images import BadImage, decode
from ssd_sagemaker.data.checks.samples import Sample
from ssd_sagemaker.environment import Paths, TrainingSettings
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.evaluate.images import EvaluatedImage, encoded_image, read_answers
from ssd_sagemaker.evaluate.plots import confusion_plot, pr_curves, side_by_side
from ssd_sagemaker.evaluate.report import report_files
from ssd_sagemaker.evaluate.scoring import Evaluation, score
from ssd_sagemaker.job import read_training_job
from ssd_sagemaker.model.artifact import MODEL_INFO_FILE, ModelInfo, read_model_info
from ssd_sagemaker.storage import write_files

LOG = logging.getLogger(__name__)

EXAMPLE_IMAGES = 4  # validation images drawn with ground truth and predictions side by side


@dataclass(frozen=True)
class Detections:
    """Where the detections come from: `predict(samples, keep)` runs the model (returning the
    scored images and the pixels of the first `keep`), or `answers` is a folder of
    batch-transform outputs."""

    model_dir: Path
    predict: Callable[[list[Sample], int], tuple[list[EvaluatedImage], list]] | None = None
    answers: Path | None = None


def channel_samples(paths: Paths, channel: str) -> tuple[list[Sample], dict[int, str], int,
                                                         float]:
    """The channel's samples read as `train` reads them (any format), its class names, and the
    job's num_classes and overlap_threshold (the IoU validation scores at)."""
    job = read_training_job(paths, TrainingSettings())
    hp = job.hyperparameters
    if channel not in job.channels:
        raise ClientError(f"--channel {channel}: the job declares no such channel in "
                          f"{paths.input_data_config_file} (it has "
                          f"{', '.join(sorted(job.channels)) or 'none'}).")
    read = read_file_channel(paths, job.channels, channel, hp.num_classes, hp.label_width)
    read.report.log()
    read.report.check()
    if not read.samples:
        raise ClientError(f"the {channel} channel has no labelled image to evaluate on.")
    return read.samples, read.class_names, hp.num_classes, hp.overlap_threshold


def _class_names(info: ModelInfo | None, channel_names: dict[int, str],
                 num_classes: int) -> tuple[str, ...]:
    if info is not None:
        if info.num_classes != num_classes:
            raise ClientError(f"the model has {info.num_classes} classes "
                              f"({', '.join(info.classes)}) but hyperparameters.json says "
                              f"num_classes={num_classes}: evaluate the model on its own job's "
                              f"data.")
        return info.classes
    return tuple(channel_names.get(c, f"class {c}") for c in range(num_classes))


def _pixels(samples: list[Sample]) -> list:
    pictures = []
    for sample in samples:
        try:
            pictures.append(decode(encoded_image(sample)))
        except BadImage as error:
            raise ClientError(f"{sample.origin}: image {error}") from None
    return pictures


def run_evaluate(paths: Paths, channel: str, output: Path, source: Detections) -> Evaluation:
    """Score the model's (or the answers') detections on `channel` and write the report."""
    samples, channel_names, num_classes, iou = channel_samples(paths, channel)
    info = None  # scoring answers needs no model: its class names and input size if it is there
    if source.predict is not None or (source.model_dir / MODEL_INFO_FILE).is_file():
        info = read_model_info(source.model_dir)
    classes = _class_names(info, channel_names, num_classes)
    keep = min(EXAMPLE_IMAGES, len(samples))
    if source.predict is not None:
        images, pixels = source.predict(samples, keep)
        what = {"model": str(source.model_dir)}
    else:
        assert source.answers is not None
        images, pixels = read_answers(source.answers, samples), _pixels(samples[:keep])
        what = {"predictions": str(source.answers)}
    # Validation scores boxes in the network's S x S input; without a model, the image's pixels.
    evaluation = score(images, classes, info.image_shape if info else None, iou)
    files = report_files(evaluation, {**what, "channel": channel})
    files["pr_curves.png"] = pr_curves(evaluation)
    files["confusion_matrix.png"] = confusion_plot(evaluation)
    written = write_files(output, files, "the evaluation report")
    written += write_files(output / "examples", {
        f"{Path(image.name).stem}.jpg": side_by_side(image, picture, classes)
        for image, picture in zip(images, pixels)}, "the example images")
    LOG.info("evaluated %d images of the %s channel: VOC07 mAP %.4f; %d files in %s",
             len(images), channel, evaluation.voc07_map, len(written), output)
    return evaluation
