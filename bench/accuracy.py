"""Held-out accuracy of `train` next to GluonCV's reference loop, at equal epochs.

A fixed, seeded benchmark set — filled circles, squares and triangles (`draw_shape`, which
returns the exact box) on crops of the photographs scikit-image ships (`skimage.data`, no
download; generated textures when scikit-image is absent) — is written as image + JSON channels:
a train set and a separate held-out set (other seed: other crops, shapes, places). Then:

- ours: `python -m ssd_sagemaker train` on that tree (held-out set as the validation channel),
  the per-epoch held-out mAP read from `output/data/metrics.jsonl`;
- reference: the same network (`build_network`, same seed, hence the same initial weights),
  batch, learning rate, epochs and images, trained and validated the `train_ssd.py` way
  (`bench/reference_loop.py`).

Both train from scratch (`use_pretrained_model=0`): the ImageNet weights are not available on
these machines. The default learning rate is 0.0003: at `train`'s default 0.001 the
from-scratch VGG collapses in its first epoch on this set (cross-entropy stuck at 9.57, mAP 0).
Prints both mAP curves (VOC07 11-point = `validation:mAP`, and area), saves the plot, and checks
the goal: ours >= reference - 0.01 at the last epoch (best and mean epochs are printed too).
The default run (8 epochs of 24 images, ~7 min on 2 CPUs) is far too short for a from-scratch
detector to learn (both stay near 0); `--epochs 200` is the informative run.
Run by hand: `python bench/accuracy.py [--epochs 8] [--train-images 24] [--test-images 12]
[--image-shape 300] [--batch 4] [--learning-rate 0.0003] [--plot PATH]`."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ssd_sagemaker.cpu_features import use_every_cpu_for_openmp
from ssd_sagemaker.data.synthetic import CLASS_NAMES, draw_shape

# The reference loop runs in this process, `train` in a child that inherits the variable: both
# with `train`'s OpenMP pool (MXNet is imported later, inside train_reference).
use_every_cpu_for_openmp()

GOAL_MARGIN = 0.01
MIN_CONTRAST = 120.0  # BGR distance between a shape and the mean of the ground under it
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
          "immunohistochemistry", "camera", "grass", "gravel", "brick", "coins", "moon")


def backgrounds() -> tuple[str, list[np.ndarray]]:
    """The photographs as BGR arrays, or ('textures', []) without scikit-image."""
    try:
        from skimage import data
    except ImportError:
        return "generated textures (scikit-image is not installed)", []
    photos = [getattr(data, name)() for name in PHOTOS] + [data.stereo_motorcycle()[0]]
    photos = [cv2.cvtColor(p, cv2.COLOR_GRAY2BGR) if p.ndim == 2 else p[..., ::-1].copy()
              for p in photos]
    return f"{len(photos)} scikit-image photographs", photos


def _texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Colour noise summed over a few scales: busy like a photo, not a flat ground."""
    image = np.zeros((height, width, 3), np.float32)
    for cells in (4, 12, 40):
        coarse = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
        image += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC) / 3
    return np.clip(image, 0, 255).astype(np.uint8)


def _ground(rng: np.random.Generator, photos: list[np.ndarray], width: int,
            height: int) -> np.ndarray:
    """A random crop of a random photograph (40-100 % of its side), resized and maybe
    mirrored; a generated texture without photographs."""
    if not photos:
        return _texture(rng, width, height)
    photo = photos[int(rng.integers(len(photos)))]
    scale = rng.uniform(0.4, 1.0)
    crop_h = int(photo.shape[0] * scale)
    crop_w = min(photo.shape[1], int(crop_h * width / height))
    top = int(rng.integers(0, photo.shape[0] - crop_h + 1))
    left = int(rng.integers(0, photo.shape[1] - crop_w + 1))
    image = cv2.resize(photo[top:top + crop_h, left:left + crop_w], (width, height),
                       interpolation=cv2.INTER_AREA)
    return image[:, ::-1].copy() if rng.uniform() < 0.5 else image


def _disjoint(box, others) -> bool:
    left, top, size = box
    return all(left + size <= o[0] or o[0] + o[2] <= left or top + size <= o[1]
               or o[1] + o[2] <= top for o in others)


def render(rng: np.random.Generator, photos: list[np.ndarray]) -> tuple[np.ndarray, list]:
    """One image with 1-3 non-overlapping shapes: (image, [(class_id, box)])."""
    width, height = int(rng.integers(256, 401)), int(rng.integers(224, 321))
    image = _ground(rng, photos, width, height)
    shorter, placed, objects = min(width, height), [], []
    for _ in range(int(rng.integers(1, 4))):
        for _attempt in range(50):
            size = int(rng.integers(round(0.2 * shorter), round(0.5 * shorter) + 1))
            square = (int(rng.integers(0, width - size + 1)),
                      int(rng.integers(0, height - size + 1)), size)
            if _disjoint(square, placed):
                break
        else:
            continue
        left, top, size = square
        ground = image[top:top + size, left:left + size].reshape(-1, 3).mean(axis=0)
        colour = rng.integers(0, 256, 3)
        if np.linalg.norm(colour - ground) < MIN_CONTRAST:
            colour = np.where(ground < 128, 255, 0)
        class_id = int(rng.integers(len(CLASS_NAMES)))
        box = draw_shape(image, class_id, left, top, size, tuple(int(c) for c in colour),
                         apex=float(rng.uniform()))
        placed.append(square)
        objects.append((class_id, box))
    return image, objects


def write_channel(base: Path, channel: str, count: int, seed: int,
                  photos: list[np.ndarray]) -> None:
    """`count` JPEGs in `input/data/<channel>`, one JSON annotation each in
    `input/data/<channel>_annotation` (the layout docs/data-channels.md documents)."""
    images = base / "input/data" / channel
    notes = base / "input/data" / f"{channel}_annotation"
    images.mkdir(parents=True, exist_ok=True)
    notes.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    categories = [{"class_id": i, "name": name} for i, name in enumerate(CLASS_NAMES)]
    for index in range(count):
        image, objects = render(rng, photos)
        name = f"{channel}_{index:04d}"
        cv2.imwrite(str(images / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        (notes / f"{name}.json").write_text(json.dumps({
            "file": f"{name}.jpg",
            "image_size": [{"width": image.shape[1], "height": image.shape[0], "depth": 3}],
            "annotations": [{"class_id": c, "left": b[0], "top": b[1], "width": b[2],
                             "height": b[3]} for c, b in objects],
            "categories": categories}))


def write_job(base: Path, args: argparse.Namespace) -> None:
    config = base / "input/config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps({
        "num_classes": str(len(CLASS_NAMES)), "num_training_samples": str(args.train_images),
        "epochs": str(args.epochs), "mini_batch_size": str(args.batch),
        "image_shape": str(args.image_shape), "learning_rate": str(args.learning_rate),
        "use_pretrained_model": "0", "base_network": args.base_network,
        "optimizer": args.optimizer, "augmentation": args.augmentation,
        "lr_scheduler_step": args.lr_scheduler_step,
        "lr_scheduler_factor": str(args.lr_scheduler_factor)}))
    (config / "inputdataconfig.json").write_text(json.dumps(
        {name: {"ContentType": "image/jpeg", "TrainingInputMode": "File"}
         for name in ("train", "validation", "train_annotation", "validation_annotation")}))


def write_set(base: Path, args: argparse.Namespace, photos: list[np.ndarray]) -> None:
    """The train channel (seed `args.seed`), the held-out one (seed + 1) and the job's configs."""
    write_channel(base, "train", args.train_images, args.seed, photos)
    write_channel(base, "validation", args.test_images, args.seed + 1, photos)
    write_job(base, args)


def train_ours(base: Path) -> tuple[list[tuple], float]:
    """`python -m ssd_sagemaker train` on the tree: [(VOC07 mAP, area mAP)] per epoch, read
    from `output/data/metrics.jsonl`, and the wall time."""
    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(base), MXNET_HOME=str(base / "mxnet_home"),
               PYTHONUNBUFFERED="1")
    started = time.perf_counter()
    with open(base / "train.log", "w") as log:
        code = subprocess.run([sys.executable, "-m", "ssd_sagemaker", "train"], env=env,
                              stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        sys.exit(f"train failed ({code}); see {base / 'train.log'}")
    rows = [json.loads(line) for line in
            (base / "output/data/metrics.jsonl").read_text().splitlines()]
    return ([(row["validation_map"], row["validation_map_area"]) for row in rows],
            time.perf_counter() - started)


def describe_set(args: argparse.Namespace, source: str) -> str:
    """The benchmark job in one line (both benchmarks print it before training)."""
    return (f"{args.train_images} train + {args.test_images} held-out images (seed "
            f"{args.seed}), shapes on {source}; {args.base_network} SSD{args.image_shape} from "
            f"scratch, {args.optimizer}, augmentation {args.augmentation}, batch {args.batch}, "
            f"lr {args.learning_rate}, {args.epochs} epochs, {len(os.sched_getaffinity(0))} "
            f"CPUs")


def train_reference(base: Path, args: argparse.Namespace, epochs: int | None = None
                    ) -> tuple[list[tuple], float]:
    """The reference loop on the same channels: [(VOC07 mAP, area mAP)] per epoch (`epochs`:
    fewer than the job's). With `args.reference_order == "ours"`, each epoch takes the samples
    in the order `train` trains on them (`TrainingData.epoch_samples`), so both sides see the
    same batches; "shuffled" lets GluonCV's DataLoader shuffle, as train_ssd.py does."""
    import mxnet as mx
    import reference_loop as reference

    from ssd_sagemaker.data.channels import read_training_data
    from ssd_sagemaker.data.loading.loader import loader_workers
    from ssd_sagemaker.environment import Paths
    from ssd_sagemaker.job import read_training_job
    from ssd_sagemaker.model.network import build_network
    from ssd_sagemaker.seeding import SEED

    job = read_training_job(Paths(base))  # the job's hyperparameters, as `train` parses them
    hp = job.hyperparameters
    data = read_training_data(job.paths, job.channels, hp)
    started = time.perf_counter()
    reference.seed_everything(SEED)
    net = build_network(args.base_network, args.image_shape, CLASS_NAMES)
    anchors = reference.train_anchors(net, args.image_shape)
    workers = loader_workers()
    same_order = getattr(args, "reference_order", "shuffled") == "ours"

    def epoch_loader(epoch: int):
        samples = (list(data.epoch_samples(epoch, args.batch)) if same_order
                   else data.train.samples)
        return reference.train_loader(samples, anchors, args.image_shape, args.batch, workers,
                                      args.augmentation, shuffle=not same_order)

    held_out = reference.validation_loader(data.validation.samples, args.image_shape,
                                           args.batch, workers)
    trainer = reference.sgd_trainer(net, args.learning_rate, args.optimizer)
    curve = []
    for epoch in range(args.epochs if epochs is None else epochs):
        if epoch in hp.lr_scheduler_step:  # train_ssd.py's decay: at the epoch after the step
            trainer.set_learning_rate(trainer.learning_rate * hp.lr_scheduler_factor)
        result = reference.train_epoch(net, epoch_loader(epoch), trainer, [mx.cpu()])
        curve.append(reference.validate(net, held_out, [mx.cpu()]))
        print(f"  reference epoch {epoch}: loss {result.cross_entropy:.3f} + "
              f"{result.smooth_l1:.3f}, {result.images_per_second:.2f} images/s, held-out mAP "
              f"{curve[-1][0]:.4f} (area {curve[-1][1]:.4f})", flush=True)
    return curve, time.perf_counter() - started


def plot(path: Path, ours: list[tuple], theirs: list[tuple], title: str,
         xs: list[int] | None = None, xlabel: str = "epoch") -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    xs = list(range(len(ours))) if xs is None else xs
    figure, axes = pyplot.subplots(figsize=(6, 4))
    for curve, label, colour in ((ours, "train (ours)", "tab:blue"),
                                 (theirs, "GluonCV reference loop", "tab:orange")):
        axes.plot(xs[:len(curve)], [c[0] for c in curve], "o-", color=colour,
                  label=f"{label}, VOC07")
        axes.plot(xs[:len(curve)], [c[1] for c in curve], "s--", color=colour, alpha=0.6,
                  label=f"{label}, area")
    axes.set(xlabel=xlabel, ylabel="held-out mAP", title=title)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


def job_arguments(description: str, plot_name: str, **defaults) -> argparse.ArgumentParser:
    """The options of a benchmark job on this set (also learnability.py's), with `defaults`
    overriding this benchmark's."""
    values = dict(dict(epochs=8, train_images=24, test_images=12, image_shape=300, batch=4,
                       learning_rate=0.0003, base_network="vgg-16", optimizer="sgd",
                       augmentation="ssd", lr_scheduler_step="", lr_scheduler_factor=0.1),
                  **defaults)
    parser = argparse.ArgumentParser(description=description)
    for name, value in values.items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    parser.add_argument("--seed", type=int, default=0, help="of the benchmark set")
    parser.add_argument("--plot", type=Path,
                        default=Path(tempfile.gettempdir()) / "ssd-bench" / plot_name)
    parser.add_argument("--keep", type=Path, help="write the job tree here and keep it")
    return parser


def main() -> None:
    args = job_arguments(__doc__.splitlines()[0], "accuracy.png").parse_args()

    source, photos = backgrounds()
    with tempfile.TemporaryDirectory() as folder:
        base = args.keep or Path(folder)
        write_set(base, args, photos)
        print(f"benchmark set: {describe_set(args, source)}", flush=True)
        ours, ours_seconds = train_ours(base)
        print(f"  ours: {ours_seconds:.0f} s", flush=True)
        theirs, theirs_seconds = train_reference(base, args)
        print(f"  reference: {theirs_seconds:.0f} s", flush=True)

    print("\nheld-out mAP per epoch (VOC07 11-point = validation:mAP; area in brackets)")
    print("epoch   ours               reference")
    for epoch, (mine, peer) in enumerate(zip(ours, theirs)):
        print(f"{epoch:5d}   {mine[0]:.4f} ({mine[1]:.4f})    {peer[0]:.4f} ({peer[1]:.4f})")
    plot(args.plot, ours, theirs, f"{args.train_images} train / {args.test_images} held-out, "
         f"from scratch")
    final, peer = ours[-1][0], theirs[-1][0]
    verdict = "met" if final >= peer - GOAL_MARGIN else "NOT met"
    print(f"\nlast epoch: ours {final:.4f}, reference {peer:.4f}, difference "
          f"{final - peer:+.4f} (goal: >= -{GOAL_MARGIN}: {verdict}); "
          f"wall time ours {ours_seconds:.0f} s, reference {theirs_seconds:.0f} s")
    for label, pick in (("best", max), ("mean", lambda v: sum(v) / len(v))):
        print(f"{label} epoch: ours {pick([c[0] for c in ours]):.4f}, reference "
              f"{pick([c[0] for c in theirs]):.4f}")
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
