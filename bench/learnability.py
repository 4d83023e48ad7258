"""Learnability: does `train` learn to detect from scratch on held-out images, and as fast as
GluonCV's own training loop at equal steps and settings?

The benchmark set of `accuracy.py` (filled circles, squares and triangles on crops of real
photographs, a train set and a held-out set drawn with another seed) is learnt from scratch
(`use_pretrained_model=0`: no ImageNet weights on these machines) by

- ours: `python -m ssd_sagemaker train`, held-out set as the validation channel;
- reference: `bench/reference_loop.py` (train_ssd.py's loop and GluonCV's metrics) on the same
  network and initial weights (`build_network`, same seed), images, batch, optimizer, learning
  rate, augmentation and number of steps.

Both are validated on the held-out set after every epoch; the curves are printed against the
optimizer step (epoch x steps per epoch: keep the train images a multiple of the batch, so that
both sides take the same full steps), with the first step at which each reaches
the target mAP, the wall time of each, and ours - reference at the last step (goal >= -0.01).
Defaults: the settings that learnt fastest per CPU second here (README in this folder).
Run by hand: `python bench/learnability.py [--epochs 6] [--train-images 400] [--test-images 24]
[--base-network resnet-50] [--optimizer adam] [--learning-rate 0.0005] [--batch 2]
[--augmentation none] [--lr-scheduler-step 5] [--lr-scheduler-factor 0.1] [--target 0.5]
[--reference-order ours|shuffled] [--side-by-side] [--plot PATH] [--keep DIR]`."""

from __future__ import annotations

import math
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from accuracy import (
    GOAL_MARGIN,
    backgrounds,
    describe_set,
    job_arguments,
    plot,
    train_ours,
    train_reference,
    write_set,
)


def first_reaching(curve: list[float], steps: list[int], target: float) -> str:
    """The first step whose held-out mAP is at least `target`, or a 'not reached' sentence."""
    for step, value in zip(steps, curve):
        if value >= target:
            return f"step {step}"
    return f"not reached (best {max(curve):.4f})" if curve else "no epoch"


def main() -> None:
    parser = job_arguments(__doc__.splitlines()[0], "learnability.png", epochs=6,
                           train_images=400, test_images=24, batch=2, learning_rate=0.0005,
                           base_network="resnet-50", optimizer="adam", augmentation="none",
                           lr_scheduler_step="5")
    parser.add_argument("--target", type=float, default=0.5, help="held-out mAP to reach")
    parser.add_argument("--skip-reference", action="store_true",
                        help="only ours (to search settings; the comparison needs both)")
    parser.add_argument("--reference-order", choices=("ours", "shuffled"), default="ours",
                        help="ours: the reference trains on the same batches in the same order "
                             "(isolates the implementations); shuffled: its own DataLoader "
                             "shuffle (adds the run-to-run spread of the batch order)")
    parser.add_argument("--reference-epochs", type=int,
                        help="run the reference for fewer epochs than ours")
    parser.add_argument("--side-by-side", action="store_true",
                        help="train both sides at once (with OMP_NUM_THREADS=1 on 2 CPUs: each "
                             "side its core, the pair in ~60 %% of the time one after the other)")
    args = parser.parse_args()

    source, photos = backgrounds()
    steps_per_epoch = math.ceil(args.train_images / args.batch)
    steps = [steps_per_epoch * (epoch + 1) for epoch in range(args.epochs)]
    with tempfile.TemporaryDirectory() as folder:
        base = args.keep or Path(folder)
        write_set(base, args, photos)
        print(f"learnability set: {describe_set(args, source)}; {steps[-1]} steps",
              flush=True)
        with ThreadPoolExecutor(1) as pool:  # `train` runs in a child process: a thread waits
            ours_job = pool.submit(train_ours, base)
            if not args.side_by_side:
                ours_job.result()
            theirs: list[tuple] = []
            theirs_seconds = float("nan")
            if not args.skip_reference:
                theirs, theirs_seconds = train_reference(base, args, args.reference_epochs)
                print(f"  reference: {theirs_seconds:.0f} s", flush=True)
            ours, ours_seconds = ours_job.result()
        print(f"  ours: {ours_seconds:.0f} s; held-out mAP per epoch "
              f"{[round(c[0], 4) for c in ours]}", flush=True)

    print("\nheld-out mAP per step (VOC07 11-point = validation:mAP; area in brackets)")
    print(" step   ours               reference")
    for index, step in enumerate(steps):
        mine = f"{ours[index][0]:.4f} ({ours[index][1]:.4f})" if index < len(ours) else "-"
        peer = f"{theirs[index][0]:.4f} ({theirs[index][1]:.4f})" if index < len(theirs) else "-"
        print(f"{step:5d}   {mine:17s}  {peer}")
    plot(args.plot, ours, theirs, f"{args.base_network}, {args.train_images} train / "
         f"{args.test_images} held-out, from scratch", xs=steps, xlabel="optimizer step")
    print(f"\nfirst step at held-out mAP >= {args.target}: ours "
          f"{first_reaching([c[0] for c in ours], steps, args.target)}, reference "
          f"{first_reaching([c[0] for c in theirs], steps, args.target)}")
    if theirs and ours:
        last = min(len(ours), len(theirs)) - 1  # the last step both sides reached
        final, peer = ours[last][0], theirs[last][0]
        verdict = "met" if final >= peer - GOAL_MARGIN else "NOT met"
        print(f"last common step ({steps[last]}): ours {final:.4f}, reference {peer:.4f}, ours - "
              f"reference {final - peer:+.4f} (goal >= -{GOAL_MARGIN}: {verdict})")
    print(f"wall time: ours {ours_seconds:.0f} s, reference {theirs_seconds:.0f} s "
          f"({len(os.sched_getaffinity(0))} CPUs shared with whatever else runs)")
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
