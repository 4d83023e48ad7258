"""A detector that finds objects in images it never saw, fitted in well under a minute on 2 CPU
cores, for tests that judge what tiling finds (tests/integration/test_tiled_recall.py): a small
SSD (a nine-layer CNN with four feature maps) at 128 px, fitted from scratch to 256 of the
demo's plain images (one colour per class on grey) without augmentation.

Why not the ResNet-50 SSD of fitted_model.py: fitted in minutes to a few images it knows those
images only (64 plain images at 64 px, 320 steps, 155 s: one-by-one recall 0.12 on unseen
ones); this task is easy (colour tells the class) and many images of it fit a small network in
few steps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fitted_model import fit_detector, read_images, tensors

SIZE = 128
IMAGES, SEED = 256, 100  # the mosaics of the tests use other seeds: images the fit never saw
STEPS, BATCH = 320, 16
WIDTH = 32  # channels of the first stage; the deeper ones have twice as many
ANCHOR_SIZES = (20, 36, 64, 100, 140)  # plain objects are 56-160 px in 224-400 px images:
ANCHOR_STEPS = (8, 16, 32, 64)  # 20-90 px at 128; one feature map per step


def _features() -> Any:
    """The feature extractor: stride-2 stages of 3x3 convolutions with batch norm, whose last
    four outputs (strides 8, 16, 32, 64) feed SSD's heads."""
    from mxnet import gluon

    def stage(*layers: tuple[int, int]) -> gluon.nn.HybridSequential:
        block = gluon.nn.HybridSequential()
        for channels, stride in layers:
            block.add(gluon.nn.Conv2D(channels, 3, stride, 1, use_bias=False),
                      gluon.nn.BatchNorm(), gluon.nn.Activation("relu"))
        return block

    class Features(gluon.HybridBlock):
        def __init__(self) -> None:
            super().__init__()
            with self.name_scope():
                self.stride8 = stage((WIDTH // 2, 2), (WIDTH, 2), (WIDTH, 1), (2 * WIDTH, 2),
                                     (2 * WIDTH, 1))
                self.stride16 = stage((2 * WIDTH, 2), (2 * WIDTH, 1))
                self.stride32 = stage((2 * WIDTH, 2))
                self.stride64 = stage((2 * WIDTH, 2))

        def hybrid_forward(self, F, x):
            outputs = [self.stride8(x)]
            for block in (self.stride16, self.stride32, self.stride64):
                outputs.append(block(outputs[-1]))
            return outputs

    return Features()


def small_ssd(size: int, classes: list[str]) -> Any:
    """The small SSD, initialised (the builder `fit_detector` takes)."""
    import mxnet as mx
    from gluoncv.model_zoo.ssd.ssd import SSD

    scale = size / SIZE
    net = SSD(None, size, lambda **_: _features(), None, [s * scale for s in ANCHOR_SIZES],
              [[1, 2, 0.5]] * len(ANCHOR_STEPS), [s * scale for s in ANCHOR_STEPS], classes,
              pretrained=False)
    net.initialize(mx.init.Xavier())
    return net


@dataclass(frozen=True)
class SmallDetector:
    model_dir: Path
    training_map: float  # VOC07 on its 256 training images


def fit_small_detector(folder: Path) -> SmallDetector:
    """The small SSD fitted to IMAGES plain images (seed SEED), exported to `folder`/model."""
    images, labels = tensors(read_images(folder / "train", IMAGES, SEED, plain=True), SIZE)
    reached = fit_detector(folder / "model", images, labels, SIZE, "small-cnn",
                           target_map=1.0, max_steps=STEPS, check_every=STEPS,
                           batch_size=BATCH, build_net=small_ssd)
    return SmallDetector(folder / "model", reached)
