"""`ssd-sagemaker selftest`: the command to run on a new instance type before paying for a job.

It reports the software versions, every device with its verdict and the pretrained weights in
the cache; then, for both base networks, it runs one inference and a few real training steps
(the training loop of `train`, float32 and the precision `precision=auto` would pick) on each
usable device and on the CPU, all from the same seeded weights and batch, and compares each
device with the CPU. The report ends with "ready", or with the reasons it is not."""

from __future__ import annotations

import io
import logging
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import mxnet as mx
import numpy as np
from gluoncv.loss import SSDMultiBoxLoss
from mxnet import autograd, gluon

from ssd_sagemaker.cuda_driver import read_runtime_versions
from ssd_sagemaker.data.transforms.presets import training_transform
from ssd_sagemaker.gpu_support import (
    GpuCheck,
    apply_gpu_check,
    inspect_gpus,
    installed_cuda_build,
    refusal,
)
from ssd_sagemaker.metrics import MetricReporter
from ssd_sagemaker.model.backbones import BACKBONES
from ssd_sagemaker.model.network import build_network, model_cache_dir
from ssd_sagemaker.seeding import seed_everything
from ssd_sagemaker.support_window import support_window_lines
from ssd_sagemaker.training.agreement import Agreement
from ssd_sagemaker.training.loop import Learner, train_one_epoch
from ssd_sagemaker.training.precision import cpu_has_bfloat16, mixed_precision, resolve_precision

LOG = logging.getLogger(__name__)

SEED = 7
CLASSES = ("a", "b")
# Small enough that a VGG-16 from random weights does not diverge in a few steps (at 1e-3 its
# loss grows 1000-fold by step 2, and a comparison of diverging runs says nothing).
LEARNING_RATE = 1e-5
# A device's float32 results may differ from the CPU's by this much (relative to the largest
# value compared): Ampere and newer GPUs compute float32 convolutions in TF32 (10-bit mantissa)
# and cuDNN sums in another order; a wrong kernel is off by far more.
FLOAT32_TOLERANCE = 0.02
# float16/bfloat16 training losses against the same device's float32 ones.
MIXED_TOLERANCE = 0.05


@dataclass
class DeviceRun:
    """One base network on one device: raw network outputs on the seeded batch, training losses
    per step (float32, and in `precision` when that is not float32), speeds."""

    outputs: list[np.ndarray]
    losses: list[tuple[float, float]]
    precision: str = "float32"
    mixed_losses: list[tuple[float, float]] = field(default_factory=list)
    train_images_per_second: float = 0.0
    inference_images_per_second: float = 0.0
    agreement: Agreement | None = None  # auto's float16 on the first batch, as train judges it


def relative_difference(values: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    """The largest absolute difference over the largest reference magnitude (NaN → inf)."""
    worst = 0.0
    for value, expected in zip(values, reference):
        scale = max(float(np.abs(expected).max()), 1e-6)
        difference = float(np.abs(value - expected).max()) / scale
        worst = max(worst, difference if math.isfinite(difference) else math.inf)
    return worst


def _losses_array(losses: Sequence[tuple[float, float]]) -> list[np.ndarray]:
    return [np.array(losses, dtype=np.float64)]


def seeded_batch(net: gluon.HybridBlock, image_shape: int, batch_size: int):
    """A fixed batch (images with one box each, targets encoded) from the seed."""
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, image_shape, image_shape)))
    transform = training_transform(image_shape, anchors)
    rng = np.random.default_rng(SEED)
    samples = []
    for i in range(batch_size):
        image = mx.nd.array(rng.integers(0, 255, (image_shape, image_shape, 3)), dtype="uint8")
        box = [image_shape * 0.1 + i, image_shape * 0.15, image_shape * 0.7, image_shape * 0.8]
        samples.append(transform(image, np.array([box + [i % len(CLASSES)]], dtype=np.float32)))
    return tuple(mx.nd.stack(*parts) for parts in zip(*samples))


def _train_steps(learner: Learner, batch, steps: int) -> tuple[list[tuple[float, float]], float]:
    """`steps` updates with `train`'s loop: the losses of each step, images/s."""
    losses, timed, images = [], 0.0, 0
    for step in range(steps):
        result = train_one_epoch(learner, [batch], step, MetricReporter("selftest", io.StringIO()))
        losses.append((result.cross_entropy, result.smooth_l1))
        if step > 0 or steps == 1:  # the first step also builds the graph (and autotunes)
            timed += result.seconds
            images += result.images
    return losses, images / timed if timed else 0.0


def _learner(net: gluon.HybridBlock, weights: Path, context: mx.Context,
             precision: str) -> Learner:
    """The network back at `weights`, with a fresh SGD optimizer; float16 from `auto` proves
    itself first, as in `train` (`MixedPrecision.settle`)."""
    net.load_parameters(str(weights), ctx=context)
    trainer = gluon.Trainer(net.collect_params(), "sgd",
                            {"learning_rate": LEARNING_RATE, "momentum": 0.9})
    return Learner(net, trainer, [context], mixed_precision("auto", precision, trainer))


def _infer(net: gluon.HybridBlock, data: mx.nd.NDArray, repeats: int = 3
           ) -> tuple[list[np.ndarray], float]:
    """Raw class and box predictions (before NMS) on `data`; images/s of full inference."""
    with autograd.train_mode():
        cls_preds, box_preds, _ = net(data)
    outputs = [cls_preds.asnumpy(), box_preds.asnumpy()]
    net.hybridize(static_alloc=True, static_shape=True)
    net(data)[0].wait_to_read()  # builds the graph
    started = time.perf_counter()
    for _ in range(repeats):
        net(data)[0].wait_to_read()
    return outputs, repeats * data.shape[0] / (time.perf_counter() - started)


def run_device(base: str, image_shape: int, weights: Path, batch, context: mx.Context,
               steps: int, net: gluon.HybridBlock | None = None) -> DeviceRun:
    """From `weights` each time: inference, float32 steps and (when `precision=auto` picks
    another precision on this device) as many mixed-precision steps. `net`: the network
    already built on `context`, if any."""
    net = net or build_network(base, image_shape, CLASSES, ctx=context)
    net.load_parameters(str(weights), ctx=context)
    outputs, inference_speed = _infer(net, batch[0].as_in_context(context))
    losses, train_speed = _train_steps(_learner(net, weights, context, "float32"), batch, steps)
    run = DeviceRun(outputs, losses, train_images_per_second=train_speed,
                    inference_images_per_second=inference_speed)
    learner = _learner(net, weights, context, resolve_precision("auto", base, [context], None))
    assert learner.precision is not None
    learner.precision.settle(net, batch, [context], SSDMultiBoxLoss())  # as train would
    run.precision, run.agreement = learner.precision.precision, learner.precision.agreement
    if run.precision != "float32":
        run.mixed_losses, run.train_images_per_second = _train_steps(learner, batch, steps)
    return run


@dataclass
class Selftest:
    """The settings of one selftest and the reasons found so far (empty: ready)."""

    image_shape: int = 300
    batch_size: int = 2
    steps: int = 3
    base_networks: Sequence[str] = tuple(BACKBONES)
    emit: Callable[[str], None] = print
    reasons: list[str] = field(default_factory=list)

    def fail(self, reason: str) -> None:
        self.reasons.append(reason)
        self.emit(f"  PROBLEM: {reason}")

    def report_versions(self, check: GpuCheck) -> None:
        self.emit("versions:")
        build = check.build.distribution if check.build else "CPU build"
        self.emit(f"  Python {platform.python_version()}, MXNet {mx.__version__} ({build}), "
                  f"GluonCV {metadata.version('gluoncv')}")
        driver = check.probe.driver_version
        nvrtc = check.probe.nvrtc
        runtime = read_runtime_versions() if check.build else {}
        self.emit(f"  NVIDIA driver (CUDA) {_cuda_version(driver) if driver else 'none'}, "
                  f"CUDA runtime {runtime.get('cudart', 'none')}, "
                  f"cuDNN {runtime.get('cudnn', 'none')}, NVRTC "
                  f"{f'{nvrtc.version[0]}.{nvrtc.version[1]}' if nvrtc else 'none'}")

    def report_support_window(self) -> None:
        self.emit("support window:")
        for line in support_window_lines():
            self.emit(line)

    def report_devices(self, check: GpuCheck) -> list[mx.Context]:
        """One verdict line per device; the GPUs to exercise."""
        self.emit("devices:")
        usable = []
        for i, gpu in enumerate(check.probe.gpus):
            memory = f"{gpu.memory_bytes / 2**30:.1f} GiB"
            if check.build is None:
                verdict = "not used (the installed MXNet is the CPU build)"
            else:
                verdict = check.verdicts[i].describe()
                if check.verdicts[i].usable:
                    usable.append(mx.gpu(gpu.index))
            self.emit(f"  GPU {gpu.index}: {gpu.name}, compute capability "
                      f"{gpu.capability_text}, {memory}: {verdict}")
            if check.build is not None and not check.verdicts[i].usable:
                self.fail(refusal(gpu, check.build, check.version or "?"))
        if check.probe.error:
            self.fail(f"the NVIDIA driver could not list the GPUs: {check.probe.error}")
        if check.build is not None and not check.probe.gpus:
            self.fail("this is the GPU image but no GPU is visible (is the NVIDIA container "
                      "runtime in use, e.g. docker run --gpus all?)")
        self.emit(f"  CPU: {_cpu_name()}, {len(os.sched_getaffinity(0))} cores, bfloat16 "
                  f"instructions: {'yes' if cpu_has_bfloat16() else 'no'}: runs")
        return usable

    def report_weights(self) -> None:
        self.emit(f"pretrained weights in {model_cache_dir()}:")
        for name, backbone in BACKBONES.items():
            present = (model_cache_dir() / backbone.weights_file).is_file()
            self.emit(f"  {name}: {backbone.weights_file} "
                      + ("present" if present else "MISSING: use_pretrained_model=1 will fail "
                                                   "(use_pretrained_model=0 trains from scratch)"))

    def exercise(self, devices: Sequence[mx.Context]) -> None:
        """Every base network on the reference CPU and each device; compare."""
        reference = mx.cpu(0)
        self.emit(f"training {self.steps} steps and inference at {self.image_shape} px, batch "
                  f"{self.batch_size}; each device against {reference} within "
                  f"{FLOAT32_TOLERANCE:.0%} (float32) and {MIXED_TOLERANCE:.0%} (mixed "
                  f"precision against float32):")
        for base in self.base_networks:
            seed_everything(SEED)  # Python's generator too: the augmentation draws from it
            net = build_network(base, self.image_shape, CLASSES, ctx=mx.cpu())
            batch = seeded_batch(net, self.image_shape, self.batch_size)
            with tempfile.TemporaryDirectory(prefix="ssd-selftest-") as folder:
                weights = Path(folder) / "initial.params"
                net.save_parameters(str(weights))
                runs = {}
                for context in [reference, *devices]:
                    try:
                        runs[context] = run_device(
                            base, self.image_shape, weights, batch, context, self.steps,
                            net if context == reference else None)
                    except Exception as error:  # noqa: BLE001 - a device fault is a finding
                        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
                        self.fail(f"{base} on {context} failed: {type(error).__name__}: {first}")
                        continue
                    self.judge(base, context, runs[context], runs.get(reference))

    def judge(self, base: str, context: mx.Context, run: DeviceRun,
              reference: DeviceRun | None) -> None:
        losses = ", ".join(f"{ce:.4f}/{l1:.4f}" for ce, l1 in run.losses)
        self.emit(f"  {base} on {context}: losses (cross-entropy/smooth-L1) {losses}; "
                  f"training {run.train_images_per_second:.2f} images/s ({run.precision}), "
                  f"inference {run.inference_images_per_second:.2f} images/s")
        if run.agreement is not None:
            after = ("train uses it" if run.agreement.agrees
                     else "train falls back to float32 with a warning")
            self.emit(f"  {base} on {context}: precision=auto: {run.agreement.describe()}; "
                      f"{after}")
        if not all(math.isfinite(value) for pair in run.losses + run.mixed_losses
                   for value in pair):
            self.fail(f"{base} on {context}: a training loss is not finite")
        if run.mixed_losses and (run.agreement is None or run.agreement.agrees):
            difference = relative_difference(_losses_array(run.mixed_losses),
                                              _losses_array(run.losses))
            self.compare(f"{base} on {context}: {run.precision} losses against float32",
                         difference, MIXED_TOLERANCE)
        if reference is not None and run is not reference:
            self.compare(f"{base} on {context}: network outputs against the CPU",
                         relative_difference(run.outputs, reference.outputs), FLOAT32_TOLERANCE)
            self.compare(f"{base} on {context}: float32 losses against the CPU",
                         relative_difference(_losses_array(run.losses),
                                             _losses_array(reference.losses)), FLOAT32_TOLERANCE)

    def compare(self, what: str, difference: float, tolerance: float) -> None:
        if difference <= tolerance:
            self.emit(f"  {what}: differ by {difference:.2e} (within {tolerance:.0%})")
        else:
            self.fail(f"{what} differ by {difference:.2e}, more than {tolerance:.0%}")

    def run(self, devices: Sequence[mx.Context] | None = None) -> bool:
        """The whole report; True when ready. `devices` None: every usable GPU."""
        check = inspect_gpus(installed_cuda_build())
        self.report_versions(check)
        self.report_support_window()
        usable = self.report_devices(check)
        if check.build is not None and not self.reasons:
            apply_gpu_check(check)  # MXNET_USE_FUSION as train would set it
        self.report_weights()
        self.exercise(usable if devices is None else devices)
        if self.reasons:
            self.emit(f"not ready: {len(self.reasons)} problem(s):")
            for reason in self.reasons:
                self.emit(f"  - {reason}")
            return False
        self.emit("ready")
        return True


def _cuda_version(version: int) -> str:
    return f"{version // 1000}.{version % 1000 // 10}"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def parse_devices(text: str) -> list[mx.Context]:
    """'gpu:0,gpu:1' or 'cpu:1' → contexts (ValueError on anything else)."""
    contexts = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, _, index = item.partition(":")
        if kind not in ("cpu", "gpu") or not index.isdigit():
            raise ValueError(f"{item!r} is not cpu:N or gpu:N")
        contexts.append(mx.Context(kind, int(index)))
    return contexts
