"""Speed of the ONNX export under onnxruntime next to the MXNet network it came from, per image
on one CPU process: the network alone (MXNet's forward with its NMS, as serving hybridizes it,
against onnxruntime's run of the graph up to NMS) and end to end from decoded pixels to the
endpoint's rows (`Predictor.detect` against examples/onnx_predict.py's `detections`, whose NMS
is NumPy).

Without `--model-dir` an untrained SSD is built and exported (`--base-network`,
`--image-shape`): its speed is a trained one's, its detections are noise (NMS then works on the
full top-k). Run by hand:
`python bench/onnx_speed.py [--model-dir DIR] [--base-network resnet-50] [--image-shape 512]
[--threads 2] [--runs 20]`."""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

RUNNER_FILE = Path(__file__).resolve().parents[1] / "examples" / "onnx_predict.py"


def _median_seconds(call: Callable[[], object], runs: int) -> float:
    call()  # warm-up: memory plans, oneDNN primitives, onnxruntime's arena
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--base-network", default="resnet-50", choices=("vgg-16", "resnet-50"))
    parser.add_argument("--image-shape", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before MXNet starts its thread pool
    import mxnet as mx

    from ssd_sagemaker.model.artifact import ModelInfo, read_model_info, save_artifact
    from ssd_sagemaker.model.network import build_network
    from ssd_sagemaker.model.onnx_export import export_onnx
    from ssd_sagemaker.serving.predictor import Predictor

    spec = importlib.util.spec_from_file_location("onnx_predict", RUNNER_FILE)
    assert spec is not None and spec.loader is not None
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    with tempfile.TemporaryDirectory() as folder:
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = Path(folder) / "model"
            classes = ("circle", "square", "triangle")
            net = build_network(args.base_network, args.image_shape, classes)
            net.set_nms(0.45, 400, 100)
            save_artifact(net, model_dir, ModelInfo(classes, args.image_shape,
                                                    args.base_network, 0.45), {})
        export_onnx(model_dir, Path(folder) / "onnx")
        model = read_model_info(model_dir)
        predictor = Predictor(model_dir, mx.cpu())
        info = runner.read_info(Path(folder) / "onnx" / "model.onnx")
        session = runner.session_for(Path(folder) / "onnx" / "model.onnx", args.threads)
        image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        tensor = runner.network_input(image, info)
        data = mx.nd.array(tensor)
        seconds = {
            "MXNet network (with NMS)": _median_seconds(
                lambda: [out.wait_to_read() for out in predictor._net(data)], args.runs),
            "onnxruntime network (to NMS)": _median_seconds(
                lambda: session.run(None, {"data": tensor}), args.runs),
            "MXNet Predictor.detect": _median_seconds(lambda: predictor.detect(image), args.runs),
            "onnx_predict.detections": _median_seconds(
                lambda: runner.detections(session, info, image), args.runs)}
    network = seconds["onnxruntime network (to NMS)"] / seconds["MXNet network (with NMS)"]
    end_to_end = seconds["onnx_predict.detections"] / seconds["MXNet Predictor.detect"]
    print(f"{model.base_network} SSD{model.image_shape}, {args.threads} threads, median of "
          f"{args.runs} (Python {sys.version.split()[0]}):")
    for name, value in seconds.items():
        print(f"  {name:32s} {value * 1000:8.1f} ms")
    print(f"  onnxruntime / MXNet: network {network:.2f}x, end to end {end_to_end:.2f}x")

if __name__ == "__main__":
    main()
