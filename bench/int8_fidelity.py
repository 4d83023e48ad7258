"""INT8 (and bfloat16) fidelity on a model that detects: train a ResNet-50 SSD300 from scratch on
synthetic shapes without augmentation until it fits (`train`), then compare its reduced-precision
detections with its float32 detections (`measure`). Not a test: run by hand,

    python bench/int8_fidelity.py train --model-dir /tmp/fid/model
    python bench/int8_fidelity.py measure --model-dir /tmp/fid/model

Reported: VOC07 mAP of the INT8 detections with the float32 detections (score >= 0.5) taken as
the ground truth, and the held-out mAP of each against the real labels.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from fitted_model import fit_detector, read_images, tensors

LOG = logging.getLogger("int8_fidelity")


def train(args) -> None:
    samples = read_images(args.model_dir.parent / "train", args.train_images, seed=0)
    images, labels = tensors(samples, args.image_shape)
    fitted = fit_detector(args.model_dir, images, labels, args.image_shape, args.base_network,
                          args.target_map, args.max_steps, args.validate_every,
                          args.batch_size)
    LOG.info("trained model written to %s (training-set mAP %.4f)", args.model_dir, fitted)


def held_out_map(found, labels) -> float:
    """VOC07 mAP of detections against the real labels (rows [x1, y1, x2, y2, class])."""
    from ssd_sagemaker.evaluation import DetectionMAP

    metric = DetectionMAP()
    for (ids, scores, boxes), label in zip(found, labels):
        metric.add_image(boxes, ids, scores, label[:, :4], label[:, 4])
    return metric.result().voc07


def measure(args) -> None:
    """INT8 made from the trained float32 network (calibrated on images it has not seen),
    every float32-layer candidate measured, then fidelity and held-out mAP per precision."""
    import mxnet as mx

    from ssd_sagemaker.cpu_features import cpu_has_bfloat16, cpu_has_int8_dot_product
    from ssd_sagemaker.model.artifact import SYMBOL_FILE, load_exported_network
    from ssd_sagemaker.model.quantization import (
        agreement_map,
        detections,
        float32_candidates,
        quantized,
        write_int8_network,
    )
    from ssd_sagemaker.serving.handlers import bfloat16_network

    size = args.image_shape
    work = args.model_dir.parent
    calibration, _ = tensors(read_images(work / "calibration", args.calibration_images,
                                         seed=1), size)
    if args.calibrate_on_training_images:  # as `train` does without a validation channel
        calibration = tensors(read_images(work / "train", args.train_images, seed=0), size)[0]
    held_out, held_labels = tensors(read_images(work / "held_out", args.held_out_images,
                                                seed=2), size)
    trained, trained_labels = tensors(read_images(work / "train", args.train_images, seed=0),
                                      size)
    float32 = load_exported_network(args.model_dir, mx.cpu())
    reference = {"held-out": detections(float32, held_out), "training": detections(float32,
                                                                                   trained)}
    print(f"CPU: VNNI/AMX {'yes' if cpu_has_int8_dot_product() else 'no'}, bfloat16 "
          f"{'yes' if cpu_has_bfloat16() else 'no'}")
    if args.every_candidate:
        for layers in float32_candidates(args.model_dir / SYMBOL_FILE):
            found = detections(quantized(args.model_dir, calibration, layers), trained)
            print(f"candidate: {len(layers)} convolutions float32 -> training images: mAP "
                  f"against float32 {agreement_map(reference['training'], found, size):.4f}, "
                  f"against the labels {held_out_map(found, trained_labels):.4f}", flush=True)
    started = time.time()
    entry, _ = write_int8_network(args.model_dir, calibration)
    print(f"chosen at calibration ({time.time() - started:.0f} s): "
          f"{len(entry.float32_layers)} float32 convolutions {list(entry.float32_layers)}, "
          f"calibration-set fidelity {entry.fidelity_map}")
    networks = {"float32": float32,
                "int8": load_exported_network(args.model_dir, mx.cpu(), int8=True)}
    if cpu_has_bfloat16():
        networks["bfloat16"] = bfloat16_network(load_exported_network(args.model_dir,
                                                                      mx.cpu()), mx.cpu())
    def shown(value: float | None) -> str:
        return "n/a (float32 detects nothing scoring >= 0.5)" if value is None else f"{value:.4f}"

    for name, net in networks.items():
        found = {"held-out": detections(net, held_out), "training": detections(net, trained)}
        print(f"{name:8s} held-out mAP {held_out_map(found['held-out'], held_labels):.4f} "
              f"({len(held_out)} images) | training-set mAP "
              f"{held_out_map(found['training'], trained_labels):.4f} ({len(trained)} images) | "
              f"mAP against float32 detections: training images "
              f"{shown(agreement_map(reference['training'], found['training'], size))}, "
              f"held-out {shown(agreement_map(reference['held-out'], found['held-out'], size))}",
              flush=True)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("train", "measure"))
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--base-network", default="resnet-50")
    parser.add_argument("--image-shape", type=int, default=300)
    parser.add_argument("--train-images", type=int, default=16)
    parser.add_argument("--held-out-images", type=int, default=32)
    parser.add_argument("--calibration-images", type=int, default=32)
    parser.add_argument("--calibrate-on-training-images", action="store_true")
    parser.add_argument("--every-candidate", action="store_true",
                        help="also measure every float32-layer candidate on the held-out images "
                             "(calibration logs those it tries, up to the first that meets the "
                             "goal)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=90)
    parser.add_argument("--validate-every", type=int, default=10)
    parser.add_argument("--target-map", type=float, default=0.95)
    args = parser.parse_args()
    if args.command == "train":
        train(args)
    else:
        measure(args)


if __name__ == "__main__":
    main()
