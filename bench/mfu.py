"""Model FLOP utilisation of training, for each backbone x precision in one run: FLOPs per image
counted from the symbol graph (`model/flops.py`, training = 3 x forward), images/s of
forward + backward + SGD update on a batch in memory (`train_step.step_times`), the GFLOP/s
that makes, and the practical peak of this CPU in the same precision and threads (a 3x3
convolution with its backward, through MXNet/oneDNN), each per wall second and per CPU second
(CPU time leaves out what other processes take on a shared machine). Precisions the hardware
cannot run are reported with the reason `train` would give, not measured. Also times the VGG
conv4_3 L2-norm scale fwd+bwd as GluonCV's broadcast_mul and as this project's depthwise
convolution. Not a test: run by hand,
`OMP_NUM_THREADS=<cores> python bench/mfu.py [--batch 4] [--steps 3] [--image-shape 300]`."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import mxnet as mx
from gluoncv.model_zoo.ssd.vgg_atrous import Normalize
from mxnet import autograd
from mxnet.contrib.amp import amp as amp_module
from train_step import step_times

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.flops import TRAINING_PER_FORWARD, symbol_flops, training_flops_per_image
from ssd_sagemaker.model.l2_normalization import ConvolutionScaledNormalize
from ssd_sagemaker.model.network import build_network
from ssd_sagemaker.training.precision import resolve_precision

NETWORKS = ("vgg-16", "resnet-50")
PRECISIONS = ("float32", "bfloat16", "float16")
# The peak probe: a VGG conv4-sized 3x3 convolution (256 -> 256 channels at 38x38).
PEAK_CHANNELS, PEAK_SIZE = 256, 38


def _dtype(precision: str):
    return amp_module.bfloat16 if precision == "bfloat16" else precision


def _median_seconds(step: Callable[[], None], repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds (all threads of this process) of `step`."""
    step()  # warm-up: primitives, memory
    wall, cpu = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        step()
        mx.nd.waitall()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return statistics.median(wall), statistics.median(cpu)


def practical_peak(precision: str, batch: int, repeats: int = 5) -> tuple[float, float]:
    """GFLOP per wall second and per CPU second of a 3x3 convolution's forward + backward (data
    and weight gradients) in `precision`: what a training step could reach if it were all
    convolution."""
    shape = (batch, PEAK_CHANNELS, PEAK_SIZE, PEAK_SIZE)
    data = mx.nd.amp_cast(mx.nd.random.uniform(shape=shape), dtype=_dtype(precision))
    weight = mx.nd.amp_cast(mx.nd.random.normal(scale=0.05, shape=(PEAK_CHANNELS,
                                                                    PEAK_CHANNELS, 3, 3)),
                            dtype=_dtype(precision))
    data.attach_grad()
    weight.attach_grad()

    def step() -> None:
        with autograd.record():
            out = mx.nd.Convolution(data, weight, kernel=(3, 3), pad=(1, 1),
                                    num_filter=PEAK_CHANNELS, no_bias=True)
        out.backward()

    graph = mx.sym.Convolution(mx.sym.var("data"), kernel=(3, 3), pad=(1, 1),
                               num_filter=PEAK_CHANNELS, no_bias=True)
    flops = TRAINING_PER_FORWARD * symbol_flops(graph, shape)
    wall, cpu = _median_seconds(step, repeats)
    return flops / wall / 1e9, flops / cpu / 1e9


def l2_norm_scale_ms(batch: int, size: int, repeats: int = 5) -> dict[str, tuple[float, float]]:
    """Wall and CPU milliseconds of the conv4_3 L2 normalisation + scale, forward and backward,
    both ways."""
    gluoncv = Normalize(512, 20)
    gluoncv.initialize()
    blocks = {"broadcast_mul (GluonCV)": gluoncv,
              "depthwise 1x1 convolution (ours)": ConvolutionScaledNormalize(gluoncv)}
    data = mx.nd.random.uniform(shape=(batch, 512, size, size))
    data.attach_grad()
    result = {}
    for name, block in blocks.items():
        block.hybridize(static_alloc=True, static_shape=True)

        def step(block=block) -> None:
            with autograd.record():
                out = block(data)
            out.backward()

        wall, cpu = _median_seconds(step, repeats)
        result[name] = 1000 * wall, 1000 * cpu
    return result


def _reason_not_runnable(precision: str, base_network: str) -> str | None:
    """Why this CPU cannot train in `precision` (train's own check), None when it can."""
    try:
        resolve_precision(precision, base_network, [mx.cpu()], None)
    except ClientError as error:
        return str(error).split(";")[0]
    return None


def _print_goals(measured: dict[tuple[str, str], tuple[float, float]]) -> None:
    """Issue 18's goals, where this machine could measure them."""
    resnet = [measured.get(("resnet-50", p)) for p in ("float32", "bfloat16")]
    if resnet[0] and resnet[1]:
        print(f"ResNet-50 bfloat16 / float32 images/s: {resnet[1][0] / resnet[0][0]:.2f} "
              f"(goal >= 1.4)")
    else:
        print("ResNet-50 bfloat16 / float32 (goal >= 1.4): not measurable on this machine")
    vgg = measured.get(("vgg-16", "bfloat16"))
    print(f"VGG-16 bfloat16 MFU by CPU time: {vgg[1]:.0%} (goal >= 80 %)" if vgg else
          "VGG-16 bfloat16 MFU (goal >= 80 %): not measurable on this machine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--image-shape", type=int, default=300)
    args = parser.parse_args()
    print(f"batch {args.batch}, {args.image_shape} px, {args.steps} timed steps after one "
          f"warm-up, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    rows = ["| network, precision | GFLOP/image (training) | images/s | GFLOP/s | practical "
            "peak GFLOP/s | MFU | MFU by CPU time |", "|---|---|---|---|---|---|---|"]
    measured: dict[tuple[str, str], tuple[float, float]] = {}  # images/s, MFU
    for base_network in NETWORKS:
        flops = training_flops_per_image(build_network(base_network, args.image_shape,
                                                       ["a", "b", "c"]), args.image_shape)
        for precision in PRECISIONS:
            reason = _reason_not_runnable(precision, base_network)
            if reason:
                rows.append(f"| {base_network}, {precision} | {flops / 1e9:.2f} | not run: "
                            f"{reason} | | | | |")
                continue
            # The peak is probed right before and after the steps, so both see the same load;
            # per CPU second, the time other processes hold the cores does not count.
            before = practical_peak(precision, args.batch)
            wall, cpu = step_times(base_network, args.image_shape, args.batch, args.steps,
                                   precision)
            after = practical_peak(precision, args.batch)
            peak_wall, peak_cpu = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
            step_flops = flops * args.batch
            mfu, mfu_cpu = step_flops / wall / 1e9 / peak_wall, step_flops / cpu / 1e9 / peak_cpu
            rows.append(f"| {base_network}, {precision} | {flops / 1e9:.2f} | "
                        f"{args.batch / wall:.2f} | {step_flops / wall / 1e9:.1f} | "
                        f"{peak_wall:.1f} | {mfu:.0%} | {mfu_cpu:.0%} |")
            measured[base_network, precision] = args.batch / wall, mfu_cpu
            print(rows[-1], flush=True)
    print("\n".join(["", *rows, ""]))
    _print_goals(measured)
    size = args.image_shape * 38 // 300
    print(f"\nVGG conv4_3 L2 norm + scale, forward + backward, batch {args.batch}, 512 x {size} "
          f"x {size}, float32:")
    for name, (wall, cpu) in l2_norm_scale_ms(args.batch, size).items():
        print(f"  {name}: {wall:.1f} ms, {cpu:.1f} CPU-ms")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
