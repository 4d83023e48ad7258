"""`evaluate` on a small real training job (4 images, no augmentation, validated on the same
images so that 3 epochs reach a mAP above 0): it reproduces the job's best validation mAP and
per-class APs, its COCO figures are pycocotools' on its own files, its pictures are images; the
job wrote per-class AP for every epoch and TensorBoard events that TensorBoard reads; the
endpoint's answers (`predict`'s JSON, named as batch transform names them) score the same."""

import io
import json
import re
import shutil

import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cli_runner import FLOAT32, run_cli, write_demo_job
from ssd_sagemaker.evaluate.coco import STAT_NAMES
from ssd_sagemaker.metrics import METRIC_DEFINITIONS

pytestmark = pytest.mark.slow

JOB = {"num_classes": "3", "num_training_samples": "4", "epochs": "3", "mini_batch_size": "2",
       "use_pretrained_model": "0", "image_shape": "300", "learning_rate": "0.001",
       "optimizer": "adam", "augmentation": "none", "early_stopping": "false", **FLOAT32}
CLASSES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    base = tmp_path_factory.mktemp("opt_ml")
    write_demo_job(base, JOB, 4, 1)
    data = base / "input" / "data"
    for channel in ("validation", "validation_annotation"):
        shutil.rmtree(data / channel)
        shutil.copytree(data / channel.replace("validation", "train"), data / channel)
    trained = run_cli(base, "train")
    assert trained.returncode == 0, trained.stdout[-3000:]
    evaluated = run_cli(base, "evaluate", "--output", str(base / "evaluation"))
    assert evaluated.returncode == 0, evaluated.stdout[-3000:]
    return base, trained.stdout, evaluated.stdout


def _report(base, folder="evaluation"):
    return json.loads((base / folder / "evaluation.json").read_text())


def test_evaluate_reproduces_the_jobs_best_validation_map(job):
    base, training_log, _ = job
    maps = [float(v) for v in re.findall(METRIC_DEFINITIONS[0]["Regex"], training_log)]
    assert len(maps) == 3 and max(maps) > 0.01, maps  # a mAP worth reproducing
    report = _report(base)
    assert report["voc07_map"] == pytest.approx(max(maps), abs=0.005)
    assert report["images"] == 4 and report["channel"] == "validation"
    best = max(_epochs(base), key=lambda row: row["validation_map"])
    ours = {row["name"]: row["ap_voc07"] for row in report["per_class"]}
    for name, ap in best["validation_ap_per_class"].items():
        assert ours[name] == pytest.approx(ap, abs=0.005), name
    assert best["validation_map_area"] == pytest.approx(report["area_map"], abs=0.005)


def test_the_coco_figures_are_pycocotools_on_the_written_files(job):
    base, _, _ = job
    report = _report(base)
    ground = COCO(str(base / "evaluation" / "ground_truth.json"))
    evaluation = COCOeval(ground, ground.loadRes(str(base / "evaluation" / "detections.json")),
                          "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    for name, value in zip(STAT_NAMES, evaluation.stats):
        assert report[name] == (None if value < 0 else pytest.approx(value, abs=1e-4)), name
    assert len(json.loads((base / "evaluation" / "detections.json").read_text())) == sum(
        row["detections"] for row in report["per_class"])


def test_the_table_files_and_pictures(job):
    base, _, printed = job
    folder = base / "evaluation"
    report = _report(base)
    assert [row["name"] for row in report["per_class"]] == CLASSES
    for row in report["per_class"]:
        assert re.search(rf"^{row['name']} +{row['ground_truths']} +{row['detections']} ",
                         printed, re.M), printed[-2000:]
    assert re.search(rf"^mean .* {report['voc07_map']:.4f} ", printed, re.M)
    assert (folder / "per_class.csv").read_text().splitlines()[0] == \
        "name,ground_truths,detections,ap_voc07,ap_area,ap50_95"
    matrix = report["confusion_matrix"]
    assert matrix["labels"] == [*CLASSES, "background"]
    counts = matrix["rows_true_columns_predicted"]
    objects = sum(row["ground_truths"] for row in report["per_class"])
    assert sum(sum(row) for row in counts[:3]) == objects  # each object counted once
    for name, size in (("pr_curves.png", (800, 600)), ("confusion_matrix.png", None)):
        image = Image.open(io.BytesIO((folder / name).read_bytes()))
        image.verify()
        assert image.format == "PNG" and (size is None or image.size == size), name
    examples = sorted((folder / "examples").iterdir())
    assert [p.name for p in examples] == [f"train_000{i}.jpg" for i in range(4)]
    picture = Image.open(examples[0])
    assert picture.format == "JPEG" and picture.width > 2 * 300  # two panels side by side


def _epochs(base):
    return [json.loads(line) for line in
            (base / "output" / "data" / "metrics.jsonl").read_text().splitlines()]


def test_every_validated_epoch_has_per_class_ap(job):
    base, training_log, _ = job
    rows = _epochs(base)
    assert len(rows) == 3
    for row in rows:
        assert sorted(row["validation_ap_per_class"]) == CLASSES
        assert all(0 <= ap <= 1 for ap in row["validation_ap_per_class"].values())
    lines = re.findall(r"epoch (\d): AP per class: (.*)", training_log)
    assert [int(epoch) for epoch, _ in lines] == [0, 1, 2]
    assert lines[-1][1] == ", ".join(f"{name} {ap:.4f}" for name, ap in
                                     rows[-1]["validation_ap_per_class"].items())
    header = (base / "output" / "data" / "metrics.csv").read_text().splitlines()[0]
    assert header.endswith("ap_circle,ap_square,ap_triangle")
    curve = Image.open(base / "output" / "data" / "training_curve.png")
    assert curve.size == (1200, 700)


def test_tensorboard_lists_the_runs_scalars_and_pictures(job):
    base, _, _ = job
    events = EventAccumulator(str(base / "output" / "tensorboard"))
    events.Reload()
    tags = events.Tags()
    assert {"loss/cross_entropy", "loss/smooth_l1", "learning_rate", "validation/mAP",
            "throughput/images_per_second", "validation_AP/circle",
            "validation_AP/triangle"} <= set(tags["scalars"])
    maps = [(e.step, round(e.value, 6)) for e in events.Scalars("validation/mAP")]
    assert maps == [(row["epoch"], pytest.approx(round(row["validation_map"], 6), abs=1e-6))
                    for row in _epochs(base)]
    assert sorted(tags["images"]) == ["validation/train_0000", "validation/train_0001"]
    assert [e.step for e in events.Images("validation/train_0000")] == [0, 1, 2]


def test_the_endpoints_answers_score_as_the_model(job):
    """`predict` writes the endpoint's JSON; named `<image>.out` as batch transform names it,
    `evaluate --predictions` scores it like the model itself."""
    base, _, _ = job
    images = sorted((base / "input" / "data" / "validation").iterdir())
    answered = run_cli(base, "predict", *map(str, images), "--output", str(base / "predicted"))
    assert answered.returncode == 0, answered.stdout[-2000:]
    answers = base / "batch_transform"
    answers.mkdir()
    for image in images:
        shutil.copy(base / "predicted" / f"{image.stem}.json", answers / f"{image.name}.out")
    scored = run_cli(base, "evaluate", "--predictions", str(answers), "--output",
                     str(base / "from_answers"))
    assert scored.returncode == 0, scored.stdout[-2000:]
    ours, model = _report(base, "from_answers"), _report(base)
    assert ours["predictions"] == str(answers)
    for name in ("voc07_map", "area_map", *STAT_NAMES):
        assert ours[name] == (None if model[name] is None else pytest.approx(model[name],
                                                                             abs=1e-9)), name
    (answers / f"{images[1].name}.out").unlink()
    missing = run_cli(base, "evaluate", "--predictions", str(answers), "--output",
                      str(base / "refused"))
    assert missing.returncode == 1
    assert f"lacks the answers to 1 of 4 images: {images[1].name}.out" in missing.stdout
    assert "Traceback" not in missing.stdout and not (base / "refused").exists()
