"""Training images/s of `train`'s path next to GluonCV's reference loop and the compute bound,
in one run, on the same network, batch and images.

- ours: `TrainingData.train_batches(...)` + `train_one_epoch`, as `training/trainer.py` wires
  them (loader worker processes, our augmentation and target encoding, the trainer's SGD, the
  precision `train` picks by default: bfloat16 convolutions on CPUs with avx512_bf16);
- ours, float32: the same with `precision=float32`, to show what the data path alone gives;
- reference: `bench/reference_loop.py` (`SSDDefaultTrainTransform` + `gluon.data.DataLoader` +
  `gluon.Trainer`, the `train_ssd.py` way), as many loader workers as ours;
- bound: forward + backward + update on one batch already in memory (`train_step.fixed_batch`),
  through the same `train_one_epoch`, in ours' precision.

All three share one network and one Trainer (same weights, graph and update cost), and run in
alternating rounds so load from other processes hits each alike; round 0 is a warm-up (worker
start-up, graph tracing, memory planning) and is not counted. Goals: ours >= 1.15 x reference,
ours >= 0.90 x bound. The reference runs in float32, as `train_ssd.py` does by default (its
`--amp` is float16 for GPUs). MXNet reads its OpenMP settings once, at import: set them in the
environment (`OMP_NUM_THREADS=2 python bench/train_throughput.py`) or with `--omp-threads`.
Run by hand: `python bench/train_throughput.py [--images 16] [--batch 4] [--rounds 2]
[--workers N] [--omp-threads N]`."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

REFERENCE_GOAL, BOUND_GOAL = 1.15, 0.90
SHAPE = 300


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="images per timed epoch")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds after the warm-up")
    parser.add_argument("--workers", type=int, default=None,
                        help="loader workers, both sides (default: as `train`, cpus - 1)")
    parser.add_argument("--omp-threads", type=int, default=None,
                        help="set OMP_NUM_THREADS before MXNet is imported")
    parser.add_argument("--precision", default="auto",
                        choices=("auto", "float32", "bfloat16"), help="ours and the bound")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.omp_threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.omp_threads)
    import mxnet as mx
    import reference_loop as reference
    from mxnet import gluon
    from train_step import fixed_batch  # bench/train_step.py

    from ssd_sagemaker.data.channels import read_training_data
    from ssd_sagemaker.data.loading.loader import loader_workers
    from ssd_sagemaker.data.synthetic import CLASS_NAMES, write_annotated_channel
    from ssd_sagemaker.data.transforms.presets import training_transform
    from ssd_sagemaker.environment import ChannelConfig, Paths
    from ssd_sagemaker.hyperparameters import parse_hyperparameters
    from ssd_sagemaker.metrics import MetricReporter
    from ssd_sagemaker.model.network import build_network
    from ssd_sagemaker.seeding import SEED
    from ssd_sagemaker.training.loop import Learner, train_one_epoch
    from ssd_sagemaker.training.precision import MixedPrecision, resolve_precision
    from ssd_sagemaker.training.schedule import optimizer_settings

    workers = args.workers if args.workers is not None else loader_workers()
    ctx = [mx.cpu()]
    precision = resolve_precision(args.precision, "vgg-16", ctx, None)
    settings = {name: os.environ.get(name, "unset") for name in
                ("OMP_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS", "MXNET_MKLDNN_ENABLED",
                 "MXNET_ENGINE_TYPE")}
    print(f"VGG-16 SSD{SHAPE}, batch {args.batch}, {args.images} images per epoch, "
          f"{args.rounds} timed rounds after a warm-up, {workers} loader worker(s), "
          f"{len(os.sched_getaffinity(0))} CPUs, ours and bound in {precision}, {settings}",
          flush=True)

    hp = parse_hyperparameters({"num_classes": str(len(CLASS_NAMES)),
                                "num_training_samples": str(args.images),
                                "mini_batch_size": str(args.batch), "use_pretrained_model": "0"})
    reference.seed_everything(SEED)
    net = build_network("vgg-16", SHAPE, CLASS_NAMES)
    trainer = gluon.Trainer(net.collect_params(), "sgd",
                            optimizer_settings("sgd", hp.learning_rate, hp.momentum,
                                               hp.weight_decay, None))
    anchors = reference.train_anchors(net, SHAPE)
    bound_batch = fixed_batch(net, SHAPE, args.batch)
    reporter = MetricReporter("bench", open(os.devnull, "w"))
    mixed, float32 = MixedPrecision(precision, trainer), MixedPrecision("float32", trainer)

    with tempfile.TemporaryDirectory() as folder:
        paths = Paths(Path(folder))
        write_annotated_channel(paths.channel_dir("train"), paths.channel_dir("train_annotation"),
                                args.images, seed=0)
        channels = {name: ChannelConfig(name, "image/jpeg")
                    for name in ("train", "train_annotation")}
        data = read_training_data(paths, channels, hp)
        data.workers = workers
        ours_transform = training_transform(SHAPE, anchors)
        loader = reference.train_loader(data.train.samples, anchors, SHAPE, args.batch, workers)
        steps = args.images // args.batch

        def ours_in(arithmetic: MixedPrecision):
            def run(epoch: int) -> float:
                batches = data.train_batches(epoch, ours_transform, args.batch)
                return train_one_epoch(Learner(net, trainer, ctx, arithmetic), batches, epoch,
                                       reporter).images_per_second
            return run

        def gluoncv(epoch: int) -> float:
            return reference.train_epoch(net, loader, trainer, ctx,
                                         max_batches=steps).images_per_second

        def bound(epoch: int) -> float:
            return train_one_epoch(Learner(net, trainer, ctx, mixed), [bound_batch] * steps,
                                   epoch, reporter).images_per_second

        sides = {"ours": ours_in(mixed), "ours_float32": ours_in(float32),
                 "reference": gluoncv, "bound": bound}
        speeds: dict[str, list[float]] = {name: [] for name in sides}
        for round_index in range(args.rounds + 1):
            line = []
            for name, run in sides.items():
                speed = run(round_index)
                line.append(f"{name} {speed:.3f}")
                if round_index > 0:
                    speeds[name].append(speed)
            label = "warm-up" if round_index == 0 else f"round {round_index}"
            print(f"  {label}: " + ", ".join(line) + " images/s", flush=True)
        data.close()

    median = {name: statistics.median(values) for name, values in speeds.items()}
    print("\nimages/s (median of the timed rounds)")
    for name, label in (("ours", f"ours (train path, {precision})"),
                        ("ours_float32", "ours, precision=float32"),
                        ("reference", "GluonCV reference loop"),
                        ("bound", f"compute bound ({precision})")):
        print(f"  {label:<32} {median[name]:.3f}")
    versus_reference = median["ours"] / median["reference"]
    versus_bound = median["ours"] / median["bound"]
    print(f"ratio ours / reference: {versus_reference:.3f} (goal >= {REFERENCE_GOAL}: "
          f"{'met' if versus_reference >= REFERENCE_GOAL else 'NOT met'})")
    print(f"ratio ours / bound:     {versus_bound:.3f} (goal >= {BOUND_GOAL}: "
          f"{'met' if versus_bound >= BOUND_GOAL else 'NOT met'})")
    print(f"ratio ours float32 / reference: {median['ours_float32'] / median['reference']:.3f} "
          f"(the data path alone)")


if __name__ == "__main__":
    main()
