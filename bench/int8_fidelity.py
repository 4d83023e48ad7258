"""INT8 (and bfloat16) fidelity on a model that detects: compare a trained network's
reduced-precision detections with its float32 detections and with the labels, on images it has
not seen, after quantizing it as `quantize=int8` does (`measure`). Not a test: run by hand, on
the demo's model (ResNet-50 SSD300 from scratch on the plain shapes; it generalises: held-out
mAP about 0.8) —

    bash scripts/demo.sh && cp -r demo/opt_ml/model /tmp/int8/model
    python bench/int8_fidelity.py measure --plain --every-candidate --model-dir /tmp/int8/model

or on a detector fitted here to a few varied synthetic images (`train`; it does not generalise,
so its held-out numbers say nothing):

    python bench/int8_fidelity.py train --model-dir /tmp/fid/model
    python bench/int8_fidelity.py measure --calibrate-on-training-images --model-dir /tmp/fid/model

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


def measure(args) -> None:
    """INT8 made from the trained float32 network as `quantize=int8` makes it (calibrated on
    labelled images it has not seen), then fidelity and held-out mAP per precision; with
    `--every-candidate`, every float32-layer candidate measured on the held-out images too."""
    import mxnet as mx

    from ssd_sagemaker.cpu_features import cpu_has_bfloat16, cpu_has_int8_dot_product
    from ssd_sagemaker.model.artifact import SYMBOL_FILE, load_exported_network
    from ssd_sagemaker.model.quantization import (
        agreement_map,
        detections,
        float32_candidates,
        map_against_labels,
        quantized,
        write_int8_network,
    )
    from ssd_sagemaker.serving.predictor import bfloat16_network

    size, work = args.image_shape, args.model_dir.parent

    def labelled(name: str, count: int, seed: int):
        return tensors(read_images(work / name, count, seed, plain=args.plain), size)

    calibration, calibration_labels = labelled("calibration", args.calibration_images, 1)
    if args.calibrate_on_training_images:  # as `train` does without a validation channel
        calibration, calibration_labels = labelled("train", args.train_images, 0)
    held_out, held_labels = labelled("held_out", args.held_out_images, 2)
    float32 = load_exported_network(args.model_dir, mx.cpu())
    reference = detections(float32, held_out)
    print(f"CPU: VNNI/AMX {'yes' if cpu_has_int8_dot_product() else 'no'}, bfloat16 "
          f"{'yes' if cpu_has_bfloat16() else 'no'}; {len(calibration)} calibration and "
          f"{len(held_out)} held-out images ({'plain' if args.plain else 'varied'} style)")
    if args.every_candidate:
        for layers in float32_candidates(args.model_dir / SYMBOL_FILE):
            found = detections(quantized(args.model_dir, calibration, layers), held_out)
            print(f"candidate: {len(layers)} convolutions float32 -> held-out mAP against "
                  f"float32 {shown(agreement_map(reference, found, size))}, against the labels "
                  f"{map_against_labels(found, held_labels):.4f}", flush=True)
    started = time.time()
    entry, _ = write_int8_network(args.model_dir, calibration, list(calibration_labels))
    print(f"chosen at calibration ({time.time() - started:.0f} s): "
          f"{len(entry.float32_layers)} float32 convolutions {list(entry.float32_layers)}; on "
          f"the calibration images: agreement {shown(entry.fidelity_map)}, mAP against the "
          f"labels {shown(entry.labels_map)} (float32 {shown(entry.float32_labels_map)})")
    networks = {"float32": float32,
                "int8": load_exported_network(args.model_dir, mx.cpu(), int8=True)}
    if cpu_has_bfloat16():
        networks["bfloat16"] = bfloat16_network(load_exported_network(args.model_dir,
                                                                      mx.cpu()), mx.cpu())
    for name, net in networks.items():
        found = detections(net, held_out)
        print(f"{name:8s} held-out ({len(held_out)} images): mAP against the labels "
              f"{map_against_labels(found, held_labels):.4f}, against the float32 detections "
              f"{shown(agreement_map(reference, found, size))}", flush=True)


def shown(value: float | None) -> str:
    return "n/a (float32 detects nothing scoring >= 0.5)" if value is None else f"{value:.4f}"


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
    parser.add_argument("--plain", action="store_true",
                        help="the demo's style of shapes (for a model the demo trained)")
    parser.add_argument("--every-candidate", action="store_true",
                        help="also measure every float32-layer candidate on the held-out images "
                             "(calibration logs those it tries, up to the first that meets the "
                             "goals)")
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
