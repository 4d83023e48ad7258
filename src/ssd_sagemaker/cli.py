"""Command line: `ssd-sagemaker train | serve | predict | evaluate | export | demo-data |
validate-data | convert | fetch-weights | selftest` (the container's entry points, and the data
tools). Each
subcommand's `--help` says what it reads and writes, its variables and the exit codes.

Library code raises; this module turns errors into exit codes and the failure file, through
`errors.report_job_error` (which `errors.end_job_at_once` also uses on a distributed job's
failure, where unwinding back here would hang)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ssd_sagemaker.cpu_features import use_every_cpu_for_openmp
from ssd_sagemaker.demo import DEMO_TRAIN_IMAGES, DEMO_VALIDATION_IMAGES, write_demo_job
from ssd_sagemaker.environment import Paths, paths_from_environment
from ssd_sagemaker.errors import (
    USAGE_EXIT_CODE,
    ClientError,
    clear_markers,
    report_job_error,
    write_success,
)
from ssd_sagemaker.gpu_support import check_gpus, require_driver
from ssd_sagemaker.training.interruption import StopRequest

if TYPE_CHECKING:  # imported where used: MXNet is loaded only by the commands that run it
    from ssd_sagemaker.serving.predictor import Predictor

LOG = logging.getLogger("ssd_sagemaker")

def _configure_logging() -> None:
    """Plain timestamped lines: information on stdout with the metric lines, warnings and errors
    on stderr (SageMaker sends both to CloudWatch; a terminal or a pipe can tell them apart);
    library warnings kept out of the way. Text that is not Unicode (lone surrogates in file
    names) is escaped, not a logging error."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    information = logging.StreamHandler(sys.stdout)
    information.addFilter(lambda record: record.levelno < logging.WARNING)
    problems = logging.StreamHandler(sys.stderr)
    problems.setLevel(logging.WARNING)
    for handler in (information, problems):
        handler.setFormatter(formatter)
    logging.basicConfig(level=logging.INFO, handlers=[information, problems])
    warnings.filterwarnings("ignore", category=UserWarning, module="mxnet")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def _run_job(job: Callable[[], None], output_dir: Path | None) -> int:
    """Run a job: 0 on success; stopped by SIGTERM → 143, by Ctrl-C → 130 (checkpoint saved,
    no failure file); a ClientError → its sentence (and the failure file) and 1; anything else
    → AlgorithmError with the traceback and 2. A job that writes the markers (`output_dir`)
    first removes those of an earlier run."""
    if output_dir is not None:
        clear_markers(output_dir)
    try:
        job()
    except Exception as error:  # noqa: BLE001 - the job's last line of defence
        return report_job_error(error, output_dir)
    return 0


def _train(paths: Paths) -> None:
    """Read and validate the whole job before MXNet is imported (a bad config costs a fraction
    of a second), check the GPUs, then train."""
    use_every_cpu_for_openmp()
    from ssd_sagemaker.environment import read_training_settings
    from ssd_sagemaker.job import read_training_job, require_writable_output

    settings = read_training_settings()  # a bad variable fails now, before any config or data
    check_gpus()  # an unsupported GPU fails now, not with CUDA error 209 in the first step
    job = read_training_job(paths, settings)
    require_writable_output(paths)
    from ssd_sagemaker.training.trainer import train

    summary = train(job, should_stop=StopRequest().install())
    LOG.info("training finished: %d epochs, best mAP %s, %.0f s", summary.epochs_run,
             "n/a" if summary.best_map is None else f"{summary.best_map:.4f}", summary.seconds)
    write_success(paths.output_dir)


def _serve(paths: Paths) -> None:
    from ssd_sagemaker.serving.server import serve

    check_gpus()  # in a child process: CUDA must not be initialised before gunicorn forks
    serve(paths.model_dir)


def _serving_predictor(model_dir: Path) -> Predictor:
    """The predictor `serve` would load for `model_dir`, in the precision it would choose."""
    from ssd_sagemaker.model.artifact import read_model_info
    from ssd_sagemaker.serving.config import gpu_count, read_inference_precision
    from ssd_sagemaker.serving.precision import resolve_inference_precision
    from ssd_sagemaker.serving.predictor import Predictor

    check_gpus()
    precision = resolve_inference_precision(read_inference_precision(),
                                            read_model_info(model_dir), model_dir,
                                            gpus=gpu_count(os.environ))
    return Predictor(model_dir, precision=precision)


def _predict(model_dir: Path, output: Path, inputs: Sequence[Path],
             limit_options: dict[str, str | None]) -> None:
    """The serving predictor on local files: `<name>.json` and `<name>.annotated.jpg` each,
    with the endpoint's limits (its variables) overridden by the options given
    (`limit_options`: a detection limit's name → its option's text, None when not given)."""
    from ssd_sagemaker.serving.config import read_request_limits
    from ssd_sagemaker.serving.local_predict import collect_images, predict_files

    max_pixels, limits = read_request_limits()
    for name, raw in limit_options.items():  # one by one: the message names the option
        if raw is not None:
            try:
                limits = limits.overridden({name: raw})
            except ValueError as error:
                raise ClientError(f"--{name.replace('_', '-')}: {error}.") from None
    predictor = _serving_predictor(model_dir)
    images = collect_images(inputs)
    written = predict_files(predictor, images, output, max_pixels, limits)
    LOG.info("predicted %d images: %d files in %s", len(images), len(written), output)


def _evaluate(paths: Paths, model_dir: Path, channel: str, output: Path,
              predictions: Path | None) -> None:
    """Score the model (or batch-transform answers) on a labelled channel; print the table."""
    from ssd_sagemaker.evaluate.command import Detections, run_evaluate

    if predictions is not None:
        source = Detections(model_dir, answers=predictions)
    else:
        use_every_cpu_for_openmp()
        from ssd_sagemaker.evaluate.predicting import predict_images
        from ssd_sagemaker.serving.config import DetectionLimits, read_request_limits

        max_pixels = read_request_limits()[0]
        # the model is loaded once the channel was read and found usable
        source = Detections(model_dir, predict=lambda samples, keep: predict_images(
            _serving_predictor(model_dir), samples, max_pixels, DetectionLimits(), keep))
    from ssd_sagemaker.evaluate.report import table

    print(table(run_evaluate(paths, channel, output, source)), flush=True)


def _export(model_dir: Path, output: Path) -> None:
    """The model as ONNX (`--format onnx`, the only format): model.onnx and model_info.json."""
    from ssd_sagemaker.model.onnx_export import export_onnx

    written = export_onnx(model_dir, output)
    LOG.info("wrote %s; run it with examples/onnx_predict.py", ", ".join(map(str, written)))


def _selftest(args: argparse.Namespace) -> None:
    """Print the readiness report; a ClientError (exit 1) when the machine is not ready."""
    use_every_cpu_for_openmp()
    require_driver()  # the GPU build's MXNet cannot be imported without it
    from ssd_sagemaker.selftest import Selftest, parse_devices

    logging.getLogger("ssd_sagemaker.training.loop").setLevel(logging.WARNING)  # no "epoch 0 …"
    try:
        devices = None if args.devices is None else parse_devices(args.devices)
    except ValueError as error:
        raise ClientError(f"--devices: {error}.") from None
    test = Selftest(args.image_shape, args.batch_size, args.steps,
                    args.base_network or Selftest.base_networks,
                    emit=lambda line: print(line, flush=True))
    if not test.run(devices):
        raise ClientError(f"selftest: not ready: {'; '.join(test.reasons)}")


def _fetch_weights(timeout: float) -> None:
    """GluonCV's ImageNet weights of every base network into $MXNET_HOME/models."""
    from ssd_sagemaker.model.backbones import BACKBONES
    from ssd_sagemaker.model.cache import model_cache_dir
    from ssd_sagemaker.model.weights_download import fetch_weights, store_repo_url

    cache = model_cache_dir()
    paths = fetch_weights(BACKBONES.values(), cache, store_repo_url(), timeout)
    LOG.info("ImageNet weights in %s: %s", cache, ", ".join(path.name for path in paths))


def _validate_data(paths: Paths, num_classes: int | None, label_width: int | None) -> None:
    """Print the full data report; exit 1 (a ClientError) when any example is invalid."""
    from ssd_sagemaker.data.checks.object_sizes import NetworkInput
    from ssd_sagemaker.data.validate_data import format_report, validate_channels
    from ssd_sagemaker.environment import read_channels, read_hyperparameters, read_resource_config
    from ssd_sagemaker.hyperparameters import parse_hyperparameters

    raw = read_hyperparameters(paths)
    hp = None
    try:
        hp = parse_hyperparameters(raw)
        num_classes = num_classes or hp.num_classes
        label_width = label_width or hp.label_width
    except ClientError:
        if num_classes is None:
            raise ClientError(f"validate-data needs the number of classes: give --num-classes "
                              f"or a valid {paths.hyperparameters_file}.") from None
    shards = ({"hosts": len(read_resource_config(paths).hosts),
               "batch_size": hp.mini_batch_size, "declared": hp.num_training_samples}
              if hp is not None else {})
    network = (NetworkInput(hp.base_network, hp.image_shape, hp.smallest_anchor)
               if hp is not None else None)
    results = validate_channels(paths, read_channels(paths), num_classes, label_width or 350,
                                **shards, network=network)
    print(format_report(results), flush=True)
    if not all(result.ok for result in results):
        raise ClientError("the data has problems; see the report above")


def _convert(source_format: str, source: Path, images: Path, output: Path, to: str,
             channel: str, classes: str | None, classes_from: Path | None) -> None:
    from ssd_sagemaker.data import convert

    names = (convert.classes_from(classes_from) if classes_from else
             [c.strip() for c in (classes or "").split(",") if c.strip()])
    dataset = (convert.read_coco(source, images, names) if source_format == "coco"
               else convert.read_voc(source, images, names))
    if not dataset.images:
        raise ClientError(f"no image of {source} could be converted; "
                          f"{dataset.summary()}")
    written = (convert.write_recordio(dataset, output, channel) if to == "recordio"
               else convert.write_json_channels(dataset, output, channel)[0])
    LOG.info("converted %s to %s: %s", source, written, dataset.summary())


EXIT_CODES = """exit codes:
  0    success
  1    your input: the message (and, for train, $SAGEMAKER_BASE_DIR/output/failure) names it
  2    our fault (a bug): the traceback follows the message
  64   usage: an unknown option or a missing argument
  130  interrupted (Ctrl-C); 143 stopped by SIGTERM (train saves a checkpoint first)"""


def _help(reads: str, writes: str, variables: str, example: str) -> str:
    """A subcommand's epilog: what it reads and writes, its variables, exit codes, an example."""
    return (f"reads:\n  {reads}\nwrites:\n  {writes}\nvariables:\n  {variables}\n"
            f"{EXIT_CODES}\nexample:\n  {example}")


_BASE = "SAGEMAKER_BASE_DIR  the /opt/ml tree (default /opt/ml)"
COMMAND_HELP: dict[str, tuple[str, str]] = {
    "train": (
        "train an SSD on the data channels and write the model, as SageMaker's CreateTrainingJob "
        "runs the image",
        _help("$SAGEMAKER_BASE_DIR/input/config/{hyperparameters,inputdataconfig,resourceconfig}"
              ".json,\n  input/data/<channel>/, checkpoints/ (to resume), "
              "$MXNET_HOME/models (ImageNet weights)",
              "model/ (the artifact), checkpoints/, output/data/ (metrics.jsonl, metrics.csv, "
              "training_curve.png),\n  output/tensorboard/ (TensorBoard events), output/success "
              "or output/failure; metric lines on stdout",
              f"{_BASE}\n  SSD_PROGRESS        bar | lines | auto (default: a bar on a terminal "
              "outside a training job)\n  SSD_PROGRESS_TIMEOUT  seconds without a finished batch "
              "before the job stops (1800)\n  MXNET_HOME          the ImageNet weights' cache "
              "(default ~/.mxnet)",
              "ssd-sagemaker demo-data && ssd-sagemaker train")),
    "serve": (
        "serve the model over HTTP (GET /ping, POST /invocations), as a SageMaker endpoint runs "
        "the image",
        _help("$SAGEMAKER_BASE_DIR/model/ (the folder train wrote, or model.tar.gz extracted)",
              "HTTP answers on port 8080; log lines on stdout and stderr",
              f"{_BASE}\n  SAGEMAKER_BIND_TO_PORT  port (8080)\n  "
              "SAGEMAKER_MODEL_SERVER_WORKERS  workers (one per CPU, per GPU, as memory allows)\n  "
              "SAGEMAKER_MODEL_SERVER_TIMEOUT  seconds per request (60; or ..._TIMEOUT_SECONDS)\n  "
              "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT  answer type without Accept\n  "
              "SAGEMAKER_CONTAINER_LOG_LEVEL  log level (INFO)\n  "
              "SAGEMAKER_MAX_PAYLOAD_IN_MB  largest request body (6)\n  "
              "SSD_MAX_IMAGE_PIXELS, SSD_SCORE_THRESHOLD, SSD_MAX_DETECTIONS, "
              "SSD_DRAW_THRESHOLD,\n  SSD_INFERENCE_PRECISION, SSD_TILE, SSD_TILE_OVERLAP  "
              "(docs/serving-api.md)\n  "
              "SAGEMAKER_MULTI_MODEL=true  many models through /models, not /opt/ml/model;\n  "
              "SSD_MME_MEMORY_LIMIT_MB  their memory cap (docs/multi-model.md)",
              "SAGEMAKER_BASE_DIR=$PWD/demo/opt_ml ssd-sagemaker serve")),
    "predict": (
        "run the served model on local images, without a server",
        _help("the model folder (--model-dir), the JPEG/PNG files and folders given",
              "--output/<name>.json (the endpoint's JSON) and <name>.annotated.jpg per image",
              f"{_BASE}\n  SSD_SCORE_THRESHOLD, SSD_MAX_DETECTIONS, SSD_DRAW_THRESHOLD, "
              "SSD_MAX_IMAGE_PIXELS,\n  SSD_INFERENCE_PRECISION, SSD_TILE, SSD_TILE_OVERLAP  "
              "as for serve",
              "ssd-sagemaker predict photo.jpg --model-dir model --output predictions")),
    "evaluate": (
        "score the model on a labelled channel (VOC07, area and COCO mAP, per class), or an "
        "endpoint's batch-transform answers with --predictions",
        _help("$SAGEMAKER_BASE_DIR/input/config/{hyperparameters,inputdataconfig}.json, "
              "input/data/<channel>/,\n  the model folder (--model-dir), or --predictions/"
              "<image>.out",
              "--output/evaluation.json, per_class.csv, pr_curves.png, confusion_matrix.png,\n  "
              "detections.json and ground_truth.json (COCO formats), examples/<image>.jpg; the "
              "per-class table on stdout",
              f"{_BASE}\n  SSD_MAX_IMAGE_PIXELS, SSD_INFERENCE_PRECISION  as for serve",
              "ssd-sagemaker evaluate --model-dir model --channel validation")),
    "export": (
        "export the model to ONNX, to run it without MXNet (examples/onnx_predict.py)",
        _help("the model folder (--model-dir): the float32 network and model_info.json",
              "--output/model.onnx (the network up to NMS) and --output/model_info.json (what "
              "a runner needs:\n  classes, input size, normalisation, NMS settings)",
              _BASE,
              "ssd-sagemaker export --format onnx --model-dir model --output exported")),
    "validate-data": (
        "check the data channels as train would, decoding every image; report, no training",
        _help("$SAGEMAKER_BASE_DIR/input/config/*.json and input/data/<channel>/",
              "the report on stdout (hyperparameter problems in their own section)",
              _BASE,
              "ssd-sagemaker validate-data --num-classes 3")),
    "convert": (
        "convert COCO JSON or Pascal VOC XML into image + JSON channels or RecordIO",
        _help("the COCO instances file or the VOC XML folder, and --images",
              "--output/<channel>/ and <channel>_annotation/ (json), or <channel>.rec + .idx",
              "none",
              "ssd-sagemaker convert coco instances_train.json --images train2017 "
              "--output opt_ml/input/data")),
    "demo-data": (
        "write a small synthetic dataset (circles, squares, triangles) and the config files of "
        "a job that learns it on a CPU",
        _help("$MXNET_HOME/models (whether ImageNet weights are there)",
              "$SAGEMAKER_BASE_DIR/input/data/{train,validation}{,_annotation}/, "
              "input/config/inputdataconfig.json,\n  input/config/hyperparameters.json "
              "(kept when it exists)",
              f"{_BASE}\n  MXNET_HOME          the ImageNet weights' cache (default ~/.mxnet)",
              "SAGEMAKER_BASE_DIR=$PWD/opt_ml ssd-sagemaker demo-data")),
    "fetch-weights": (
        "download GluonCV's ImageNet weights of every base network (needs the internet; "
        "training never downloads)",
        _help("GluonCV's model store over HTTPS",
              "$MXNET_HOME/models/{vgg16_atrous,resnet50_v1}-*.params (SHA-1 checked)",
              "MXNET_HOME          the cache (default ~/.mxnet)\n  "
              "MXNET_GLUON_REPO    the model store's address (default GluonCV's)",
              "ssd-sagemaker fetch-weights --timeout 60")),
    "selftest": (
        "check this machine before paying for a job: versions, devices, weights, a few "
        "training steps and an inference per device, compared with the CPU",
        _help("$MXNET_HOME/models", "the report on stdout ('ready', or the reasons)",
              "MXNET_HOME, CUDA_VISIBLE_DEVICES",
              "ssd-sagemaker selftest --steps 2")),
}


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 64 (EX_USAGE), so that they differ from our own faults (2)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE_EXIT_CODE, f"{self.prog}: error: {message}\n")


def version_text() -> str:
    """This package's version and the stack's, read from the installed metadata (no import)."""
    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    mxnet = installed("mxnet")
    if mxnet == "not installed":
        mxnet = f"{installed('mxnet-cu112')} (CUDA 11.2)"
    return (f"ssd-sagemaker {installed('ssd-sagemaker')} (MXNet {mxnet}, GluonCV "
            f"{installed('gluoncv')}, numpy {installed('numpy')}, Python "
            f"{'.'.join(map(str, sys.version_info[:3]))})")


def _command(commands: Any, name: str) -> argparse.ArgumentParser:
    summary, epilog = COMMAND_HELP[name]
    return commands.add_parser(name, help=summary, description=summary[0].upper() + summary[1:],
                               epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ssd-sagemaker",
        description="SageMaker-compatible SSD object detection. Paths follow SageMaker's "
                    "/opt/ml layout, rooted at $SAGEMAKER_BASE_DIR (default /opt/ml). "
                    "`ssd-sagemaker COMMAND --help` says what each command reads and writes.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=version_text())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _command(commands, "train")
    _command(commands, "serve")
    predict = _command(commands, "predict")
    predict.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                         help="JPEG/PNG files or folders of them")
    predict.add_argument("--model-dir", type=Path, help="default: $SAGEMAKER_BASE_DIR/model")
    predict.add_argument("--output", type=Path, default=Path("predictions"),
                         help="folder for the outputs (default: ./predictions)")
    predict.add_argument("--score-threshold", help="keep detections scoring at least this "
                                                   "(default: $SSD_SCORE_THRESHOLD or 0)")
    predict.add_argument("--max-detections", help="keep at most this many detections per image "
                                                  "(default: $SSD_MAX_DETECTIONS or 100)")
    predict.add_argument("--draw-threshold", help="draw the detections scoring at least this in "
                                                  "<name>.annotated.jpg; the JSON keeps all "
                                                  "(default: $SSD_DRAW_THRESHOLD or 0.5)")
    evaluate = _command(commands, "evaluate")
    evaluate.add_argument("--model-dir", type=Path, help="default: $SAGEMAKER_BASE_DIR/model")
    evaluate.add_argument("--channel", default="validation",
                          help="the labelled channel to score on (default: validation)")
    evaluate.add_argument("--output", type=Path, default=Path("evaluation"),
                          help="folder for the report (default: ./evaluation)")
    evaluate.add_argument("--predictions", type=Path, metavar="DIR",
                          help="score these batch-transform outputs (<image>.out) instead of "
                               "running the model")
    export = _command(commands, "export")
    export.add_argument("--format", choices=("onnx",), default="onnx",
                        help="the exchange format (default: onnx)")
    export.add_argument("--model-dir", type=Path, help="default: $SAGEMAKER_BASE_DIR/model")
    export.add_argument("--output", type=Path, required=True,
                        help="folder for model.onnx and model_info.json")
    predict.add_argument("--tile", metavar="SIZE", help="find small objects in tiles of SIZE "
                                                        "pixels, 0 for the whole image "
                                                        "(default: $SSD_TILE or 0; docs/tiling.md)")
    predict.add_argument("--tile-overlap", metavar="F", help="overlap of neighbouring tiles, a "
                                                             "fraction of a tile (default: "
                                                             "$SSD_TILE_OVERLAP or 0.25)")
    selftest = _command(commands, "selftest")
    selftest.add_argument("--image-shape", type=int, default=300)
    selftest.add_argument("--batch-size", type=int, default=2)
    selftest.add_argument("--steps", type=int, default=3, help="training steps per device")
    selftest.add_argument("--base-network", action="append", choices=("vgg-16", "resnet-50"),
                          help="repeatable; default: both")
    selftest.add_argument("--devices", help="devices to compare with the CPU, e.g. gpu:0,gpu:1 "
                                            "(default: every usable GPU)")
    demo = _command(commands, "demo-data")
    demo.add_argument("--train-images", type=int, default=DEMO_TRAIN_IMAGES)
    demo.add_argument("--validation-images", type=int, default=DEMO_VALIDATION_IMAGES,
                      help="the held-out set (drawn with seed + 1)")
    demo.add_argument("--seed", type=int, default=0)
    weights = _command(commands, "fetch-weights")
    weights.add_argument("--timeout", type=float, default=30.0,
                         help="seconds without an answer before giving up (default 30)")
    check = _command(commands, "validate-data")
    check.add_argument("--num-classes", type=int, help="default: from hyperparameters.json")
    check.add_argument("--label-width", type=int, help="default: from hyperparameters.json")
    conversion = _command(commands, "convert")
    conversion.add_argument("source_format", choices=("coco", "voc"))
    conversion.add_argument("source", type=Path,
                            help="COCO: the instances JSON file; VOC: the folder of XML files")
    conversion.add_argument("--images", type=Path, required=True, help="the images' folder")
    conversion.add_argument("--output", type=Path, required=True)
    conversion.add_argument("--to", choices=("json", "recordio"), default="json")
    conversion.add_argument("--channel", default="train", help="output channel name")
    fixed = conversion.add_mutually_exclusive_group()
    fixed.add_argument("--classes", help="comma-separated class names in id order (default: "
                                         "COCO category ids, VOC names alphabetically)")
    fixed.add_argument("--classes-from", type=Path, metavar="ANNOTATION_JSON",
                       help="take the class ids of an earlier conversion: any annotation file "
                            "it wrote (convert validation with train's ids)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging()
    paths = paths_from_environment()
    if args.command == "train":
        return _run_job(lambda: _train(paths), paths.output_dir)
    if args.command == "serve":
        return _run_job(lambda: _serve(paths), None)
    if args.command == "predict":
        from ssd_sagemaker.serving.config import LIMIT_PARSERS  # one option per detection limit

        options = {name: getattr(args, name) for name in LIMIT_PARSERS}
        return _run_job(lambda: _predict(args.model_dir or paths.model_dir, args.output,
                                         args.inputs, options), None)
    if args.command == "evaluate":
        return _run_job(lambda: _evaluate(paths, args.model_dir or paths.model_dir,
                                          args.channel, args.output, args.predictions), None)
    if args.command == "export":
        return _run_job(lambda: _export(args.model_dir or paths.model_dir, args.output), None)
    if args.command == "validate-data":
        return _run_job(lambda: _validate_data(paths, args.num_classes, args.label_width), None)
    if args.command == "selftest":
        return _run_job(lambda: _selftest(args), None)
    if args.command == "fetch-weights":
        return _run_job(lambda: _fetch_weights(args.timeout), None)
    if args.command == "convert":
        return _run_job(lambda: _convert(args.source_format, args.source, args.images,
                                         args.output, args.to, args.channel, args.classes,
                                         args.classes_from), None)
    return _run_job(lambda: write_demo_job(paths, args.train_images, args.validation_images,
                                           args.seed), None)


if __name__ == "__main__":
    raise SystemExit(main())
