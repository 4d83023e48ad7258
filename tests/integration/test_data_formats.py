"""Training runs to completion on every data format the built-in algorithm accepts: image +
JSON (File), RecordIO (File and Pipe) and Ground Truth augmented manifests (File and Pipe), the
Pipe-mode ones through real FIFOs fed by a separate writer process, as SageMaker does. Tiny
data (2 + 2 images), 1 epoch, batch 2: each run proves the wiring, not the model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli_runner import FLOAT32, run_cli, write_hyperparameters
from planting import annotated_examples, corrupt_jpeg, recordio_payloads, write_stream
from ssd_sagemaker.data.synthetic import CLASS_NAMES, write_annotated_channel
from ssd_sagemaker.metrics import METRIC_DEFINITIONS

pytestmark = pytest.mark.slow

PIPE_WRITER = Path(__file__).resolve().parents[1] / "support" / "pipe_writer.py"
IMAGES = 2
RUN = {"num_classes": "3", "num_training_samples": str(IMAGES), "epochs": "1",
       "mini_batch_size": "2", "use_pretrained_model": "0", "image_shape": "300", **FLOAT32}
MANIFEST_ATTRIBUTES = ["source-ref", "bounding-box", "bounding-box-metadata"]


def _manifest(examples: list[tuple[bytes, dict]]) -> list[bytes]:
    records = []
    for image, document in examples:
        records.append(image)
        records.append(json.dumps({"image_size": document["image_size"],
                                   "annotations": document["annotations"]}).encode())
        records.append(json.dumps({"class-map": dict(enumerate(CLASS_NAMES)),
                                   "type": "groundtruth/object-detection"}).encode())
    return records


def _prepare(base: Path, layout: str) -> list[subprocess.Popen]:
    """The channels of one layout under `base`, the config files, and for Pipe mode the
    processes feeding the FIFOs."""
    data, scratch = base / "input" / "data", base / "scratch"
    channels, writers = {}, []
    for split in ("train", "validation"):
        if layout == "image+json":
            write_annotated_channel(data / split, data / f"{split}_annotation", IMAGES,
                                    seed=3 if split == "train" else 4, prefix=split)
            channels[split] = channels[f"{split}_annotation"] = {"ContentType": "image/jpeg"}
            continue
        examples = annotated_examples(scratch, split, IMAGES)
        manifest = layout.startswith("manifest")
        records = _manifest(examples) if manifest else recordio_payloads(examples)
        config = {"ContentType": "application/x-recordio",
                  "TrainingInputMode": "Pipe" if layout.endswith("pipe") else "File"}
        if manifest:
            config.update(RecordWrapperType="RecordIO", AttributeNames=MANIFEST_ATTRIBUTES)
        channels[split] = config
        if config["TrainingInputMode"] == "File":
            write_stream(data / split / f"{split}.rec", records)
            continue
        stream = write_stream(scratch / f"{split}.stream", records)
        data.mkdir(parents=True, exist_ok=True)
        writers.append(subprocess.Popen([sys.executable, str(PIPE_WRITER), str(data), split,
                                         str(stream), str(stream)]))
    (base / "input" / "config").mkdir(parents=True, exist_ok=True)
    (base / "input" / "config" / "inputdataconfig.json").write_text(json.dumps(channels))
    write_hyperparameters(base, RUN)
    return writers


@pytest.mark.parametrize("layout", ["image+json", "recordio-file", "recordio-pipe",
                                    "manifest-file", "manifest-pipe"])
def test_training_completes(tmp_path: Path, layout: str) -> None:
    writers = _prepare(tmp_path, layout)
    try:
        result = run_cli(tmp_path, "train", timeout=600)
    finally:
        for writer in writers:
            writer.kill()
            writer.wait()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert (tmp_path / "output" / "success").exists()
    assert (tmp_path / "model" / "model_algo_1-0000.params").is_file()
    if not layout.endswith("pipe"):  # File mode: images checked as used, summarised once
        assert "train: first pass done: no image refused while loading" in output
        assert "validation: first pass done: no image refused while loading" in output
    maps = re.findall(METRIC_DEFINITIONS[0]["Regex"], result.stdout)
    assert len(maps) == 1, output[-4000:]  # validation ran once, through the same format
    info = json.loads((tmp_path / "model" / "model_info.json").read_text())
    # Class names come from the data where the format carries them.
    expected = (list(CLASS_NAMES) if layout in ("image+json", "manifest-file", "manifest-pipe")
                else ["class_0", "class_1", "class_2"])
    assert info["classes"] == expected


def test_an_image_the_loader_refuses_stops_training_naming_it(tmp_path: Path) -> None:
    """Training opens no image before its first batch: the loader checks each as it is used.
    One corrupt image of 2 (over the 1 % tolerated) passes the channel's reading and fails the
    job when its batch is made, with the channel's ClientError naming it in the failure file."""
    _prepare(tmp_path, "image+json")
    image = sorted((tmp_path / "input" / "data" / "train").glob("*.jpg"))[0]
    image.write_bytes(corrupt_jpeg())
    result = run_cli(tmp_path, "train", timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-4000:]
    assert "train (image + JSON): 2 found, 2 used, 0 skipped, 0 with errors" in output
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure.startswith("ClientError: The train channel has 1 invalid example(s) of 2 (at "
                              "most 1% are tolerated); fix or remove them:\n"), failure
    assert (f"  train/{image.name}: image is a corrupt JPEG: its image data cannot be decoded "
            f"(libjpeg-turbo: Could not determine subsampling level of JPEG image)") in failure
    assert not (tmp_path / "model" / "model_algo_1-0000.params").exists()
