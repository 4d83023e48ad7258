"""INT8 against float32 on a network that detects: a ResNet-50 SSD fitted to 8 synthetic images
(no augmentation) at 128 px, so it fits in minutes on a CPU, then quantized as `quantize=int8`
does, calibrated on 8 other images. Its detections must agree with the float32 detections to
the fidelity goal (VOC07 mAP >= 0.95 with the confident float32 detections as ground truth),
and its mAP against the real labels must stay within 0.05 of float32's; what calibration
records (agreement, mAP against the calibration labels) is what the INT8 network does."""

import shutil

import mxnet as mx
import numpy as np
import pytest

from fitted_model import EIGHT_IMAGES, read_images, tensors
from ssd_sagemaker.model.artifact import load_exported_network
from ssd_sagemaker.model.quantization import (
    FIDELITY_GOAL,
    agreement_map,
    detections,
    map_against_labels,
    quantize_exported,
)

pytestmark = pytest.mark.slow
SIZE = EIGHT_IMAGES["size"]


def test_int8_detections_agree_with_float32_on_a_fitted_detector(tmp_path,
                                                                 eight_image_detector):
    fitted_model, images, labels, fitted = eight_image_detector
    shutil.copytree(fitted_model, tmp_path / "model")  # quantizing must not touch the shared one
    assert fitted >= 0.9, f"the detector did not fit (mAP {fitted:.3f}); nothing to compare"
    calibration, calibration_labels = tensors(read_images(tmp_path / "calibration", 8, seed=1),
                                              SIZE)
    int8, float32_layers, recorded = quantize_exported(tmp_path / "model", calibration, SIZE,
                                                       list(calibration_labels))
    float32 = load_exported_network(tmp_path / "model", mx.cpu())
    reference, found = detections(float32, images), detections(int8, images)
    fidelity = agreement_map(reference, found, SIZE)
    assert fidelity is not None and fidelity >= FIDELITY_GOAL, (fidelity, float32_layers)
    assert abs(map_against_labels(found, labels) - map_against_labels(reference, labels)) \
        <= 0.05
    confident = [np.count_nonzero(scores >= 0.5) for _, scores, _ in reference]
    assert sum(confident) >= len(images), confident  # the comparison had something to compare
    if recorded.agreement is not None:  # what calibration recorded is what the network does
        on_calibration = detections(int8, calibration)
        assert recorded.agreement == pytest.approx(agreement_map(
            detections(float32, calibration), on_calibration, SIZE))
        assert recorded.labels_map == pytest.approx(map_against_labels(on_calibration,
                                                                       calibration_labels))
