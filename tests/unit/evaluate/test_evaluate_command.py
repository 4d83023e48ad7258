"""`ssd-sagemaker evaluate` through the CLI, without a model: perfect answers score 1 in every
figure; wrong input is refused with exit 1 and a sentence naming it."""

import json

import pytest

from cli_runner import run_cli
from ssd_sagemaker.data.channels import read_file_channel
from ssd_sagemaker.environment import Paths, read_channels
from ssd_sagemaker.evaluate.images import image_name


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    base = tmp_path_factory.mktemp("opt_ml")
    made = run_cli(base, "demo-data", "--train-images", "2", "--validation-images", "5")
    assert made.returncode == 0, made.stdout
    paths = Paths(base)
    samples = read_file_channel(paths, read_channels(paths), "validation", 3, 350).samples
    return base, samples


def _answers(folder, samples, rows_of):
    folder.mkdir()
    for sample in samples:
        (folder / f"{image_name(sample)}.out").write_text(json.dumps({"prediction": rows_of(
            sample)}))


def test_perfect_answers_score_one_everywhere(demo, tmp_path):
    base, samples = demo
    _answers(tmp_path / "answers", samples, lambda s: [
        [int(c), 0.99, *map(float, box)] for c, box in zip(s.class_ids, s.boxes)])
    result = run_cli(base, "evaluate", "--predictions", str(tmp_path / "answers"),
                     "--output", str(tmp_path / "report"), "--model-dir", str(tmp_path / "none"))
    assert result.returncode == 0, result.stdout[-2000:]
    report = json.loads((tmp_path / "report" / "evaluation.json").read_text())
    present = [row for row in report["per_class"] if row["ground_truths"]]
    assert present and all(row["ap_voc07"] == 1.0 and row["ap50_95"] == pytest.approx(1.0)
                           for row in present)
    assert report["voc07_map"] == 1.0 and report["coco_map"] == pytest.approx(1.0)
    assert [row["name"] for row in report["per_class"]] == ["circle", "square", "triangle"]
    counts = report["confusion_matrix"]["rows_true_columns_predicted"]
    assert all(counts[i][j] == 0 for i in range(4) for j in range(4) if i != j)
    assert sum(counts[i][i] for i in range(3)) == sum(len(s.class_ids) for s in samples)
    assert "mean " in result.stdout and "1.0000" in result.stdout


def test_answers_of_the_wrong_class_score_zero_and_show_as_confusion(demo, tmp_path):
    base, samples = demo
    _answers(tmp_path / "answers", samples, lambda s: [
        [(int(c) + 1) % 3, 0.9, *map(float, box)] for c, box in zip(s.class_ids, s.boxes)])
    result = run_cli(base, "evaluate", "--predictions", str(tmp_path / "answers"),
                     "--output", str(tmp_path / "report"), "--model-dir", str(tmp_path / "none"))
    assert result.returncode == 0, result.stdout[-2000:]
    report = json.loads((tmp_path / "report" / "evaluation.json").read_text())
    assert report["voc07_map"] == 0.0
    counts = report["confusion_matrix"]["rows_true_columns_predicted"]
    for sample in samples:
        for class_id in sample.class_ids:
            assert counts[int(class_id)][(int(class_id) + 1) % 3] > 0


@pytest.mark.parametrize("args, message", [
    (["--channel", "test"], "--channel test: the job declares no such channel"),
    (["--predictions", "nowhere"], "--predictions nowhere is not a folder"),
])
def test_wrong_input_is_refused_with_exit_1(demo, tmp_path, args, message):
    base, _ = demo
    result = run_cli(base, "evaluate", *args, "--output", str(tmp_path / "report"),
                     "--model-dir", str(tmp_path / "none"))
    assert result.returncode == 1, result.stdout[-2000:]
    assert message in result.stdout and "Traceback" not in result.stdout
    assert not (tmp_path / "report").exists()


def test_a_missing_model_is_named(demo, tmp_path):
    base, _ = demo
    result = run_cli(base, "evaluate", "--model-dir", str(tmp_path / "none"), "--output",
                     str(tmp_path / "report"))
    assert result.returncode == 1
    assert f"The model folder {tmp_path / 'none'} does not exist" in result.stdout


def test_a_model_of_other_classes_is_refused(demo, tmp_path):
    base, samples = demo
    model = tmp_path / "model"
    model.mkdir()
    for name in ("model_algo_1-symbol.json", "model_algo_1-0000.params"):
        (model / name).write_text("{}")
    (model / "model_info.json").write_text(json.dumps({
        "classes": ["cat", "dog"], "image_shape": 300, "base_network": "resnet-50",
        "nms_threshold": 0.45}))
    _answers(tmp_path / "answers", samples, lambda s: [])
    result = run_cli(base, "evaluate", "--predictions", str(tmp_path / "answers"),
                     "--model-dir", str(model), "--output", str(tmp_path / "report"))
    assert result.returncode == 1, result.stdout[-2000:]
    assert "the model has 2 classes (cat, dog) but hyperparameters.json says num_classes=3" \
        in result.stdout
