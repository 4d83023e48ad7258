"""The end of a run on the master host: the trained network written to the model folder as the
float32 artifact and, with `quantize=int8`, the INT8 network calibrated on a sample of the data
beside it (`model/quantization.py` says which layers stay float32). The class names are asked
of the data again here: a Pipe-mode manifest names classes as they stream by."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np
from mxnet import gluon

from ssd_sagemaker.data.channels import TrainingData
from ssd_sagemaker.data.transforms.presets import validation_transform
from ssd_sagemaker.model.artifact import ModelInfo, save_artifact
from ssd_sagemaker.model.quantization import CALIBRATION_IMAGES, measured, write_int8_network

LOG = logging.getLogger(__name__)

CALIBRATION_BATCH = 8


def class_names(num_classes: int, given: Mapping[int, str]) -> tuple[str, ...]:
    """Names from the data (e.g. annotations' `categories`), `class_<id>` where none is given."""
    return tuple(given.get(i, f"class_{i}") for i in range(num_classes))


def exported_classes(num_classes: int, data: TrainingData,
                     at_start: tuple[str, ...]) -> tuple[str, ...]:
    """The class names for model_info.json, asked of the data again at export: a Pipe-mode
    manifest names classes as they stream by, the start-up peek saw only the first samples."""
    classes = class_names(num_classes, data.class_names)
    if classes != at_start:
        LOG.info("class names found while streaming: %s (at start: %s)", list(classes),
                 list(at_start))
    return classes


def export_model(net: gluon.HybridBlock, model_dir: Path, info: ModelInfo,
                 hyperparameters: Mapping[str, Any], data: TrainingData, int8: bool) -> None:
    """Write the artifact (inference graph on the CPU) for `info` (its classes as known at
    start, renamed by the data's final names), then, when `int8`, calibrate the exported
    network on a sample of the data and add its INT8 form."""
    net.collect_params().reset_ctx(mx.cpu())
    info = replace(info, classes=exported_classes(info.num_classes, data, info.classes))
    files = save_artifact(net, model_dir, info, hyperparameters)
    LOG.info("model artifact written: %s", ", ".join(str(f) for f in files))
    if not int8:
        return
    batches = list(data.calibration_batches(validation_transform(info.image_shape),
                                            CALIBRATION_BATCH, CALIBRATION_IMAGES))
    images = np.concatenate([batch[0].asnumpy() for batch in batches])
    labels = [label for batch in batches for label in batch[1].asnumpy()]
    entry, files = write_int8_network(model_dir, images, labels)
    LOG.info("INT8 network written (calibrated on %d images, %d convolutions kept in float32, "
             "mAP against float32 %s, against the labels %s where float32 has %s): %s",
             len(images), len(entry.float32_layers), measured(entry.fidelity_map),
             measured(entry.labels_map), measured(entry.float32_labels_map),
             ", ".join(str(f) for f in files))
