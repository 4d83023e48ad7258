"""Command line: `ssd-sagemaker train | serve | demo-data` (the container's entry points).

Library code raises; only this module turns errors into exit codes and the failure file."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Callable, Sequence

from ssd_sagemaker.environment import Paths, paths_from_environment
from ssd_sagemaker.errors import ClientError, write_failure, write_success
from ssd_sagemaker.training.interruption import StopRequest, TrainingInterrupted

LOG = logging.getLogger("ssd_sagemaker")

INTERRUPTED_EXIT_CODE = 128 + 15  # the shell's convention for "ended by SIGTERM"

DEMO_HYPERPARAMETERS = {
    "num_classes": "3", "epochs": "2", "mini_batch_size": "4", "image_shape": "300",
    "use_pretrained_model": "0", "learning_rate": "0.001",
}


def _configure_logging() -> None:
    """Plain timestamped lines on stdout (CloudWatch); library warnings kept out of the way."""
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=UserWarning, module="mxnet")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def _run_job(job: Callable[[], None], output_dir: Path | None) -> int:
    """Run a job: 0 on success; stopped by SIGTERM → 143 (checkpoint saved, no failure file);
    a ClientError → its sentence (and the failure file) and 1; anything else → AlgorithmError
    with the traceback and 2."""
    try:
        job()
    except TrainingInterrupted as error:
        LOG.warning("%s; a checkpoint was saved: run `train` again to resume", error)
        return INTERRUPTED_EXIT_CODE
    except ClientError as error:
        LOG.error("ClientError: %s", error)
        if output_dir is not None:
            write_failure(output_dir, error)
        return 1
    except Exception as error:  # noqa: BLE001 - the job's last line of defence
        LOG.exception("AlgorithmError: %s", error)
        if output_dir is not None:
            write_failure(output_dir, error)
        return 2
    return 0


def _train(paths: Paths) -> None:
    from ssd_sagemaker.environment import read_training_environment
    from ssd_sagemaker.training.trainer import run_training

    env = read_training_environment(paths)
    summary = run_training(env, should_stop=StopRequest().install())
    LOG.info("training finished: %d epochs, best mAP %s, %.0f s", summary.epochs_run,
             "n/a" if summary.best_map is None else f"{summary.best_map:.4f}", summary.seconds)
    write_success(paths.output_dir)


def _serve(paths: Paths) -> None:
    from ssd_sagemaker.serving.server import serve

    serve(paths.model_dir)


def _demo_data(paths: Paths, train_images: int, validation_images: int, seed: int) -> None:
    """Write the synthetic dataset as SageMaker channels, plus the config files to train on it."""
    from ssd_sagemaker.data.synthetic import write_annotated_channel

    for channel, count, channel_seed in (("train", train_images, seed),
                                         ("validation", validation_images, seed + 1)):
        write_annotated_channel(paths.channel_dir(channel),
                                paths.channel_dir(f"{channel}_annotation"), count, channel_seed,
                                prefix=channel)
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    channels = {name: {"ContentType": "image/jpeg", "TrainingInputMode": "File",
                       "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
                for name in ("train", "validation", "train_annotation", "validation_annotation")}
    paths.input_data_config_file.write_text(json.dumps(channels, indent=2) + "\n")
    if not paths.hyperparameters_file.exists():
        hyperparameters = dict(DEMO_HYPERPARAMETERS, num_training_samples=str(train_images))
        paths.hyperparameters_file.write_text(json.dumps(hyperparameters, indent=2) + "\n")
    LOG.info("demo data: %d training and %d validation images under %s", train_images,
             validation_images, paths.data_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssd-sagemaker",
        description="SageMaker-compatible SSD object detection. Paths follow SageMaker's "
                    "/opt/ml layout, rooted at $SAGEMAKER_BASE_DIR (default /opt/ml).")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("train", help="train on /opt/ml/input and write /opt/ml/model")
    commands.add_parser("serve", help="serve /opt/ml/model over HTTP (port 8080)")
    demo = commands.add_parser("demo-data", help="write a small synthetic dataset and configs")
    demo.add_argument("--train-images", type=int, default=16)
    demo.add_argument("--validation-images", type=int, default=8)
    demo.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging()
    paths = paths_from_environment()
    if args.command == "train":
        return _run_job(lambda: _train(paths), paths.output_dir)
    if args.command == "serve":
        return _run_job(lambda: _serve(paths), None)
    return _run_job(lambda: _demo_data(paths, args.train_images, args.validation_images,
                                       args.seed), None)


if __name__ == "__main__":
    raise SystemExit(main())
