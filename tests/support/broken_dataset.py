"""A dataset with one planted fault per file (image+JSON train channel, RecordIO validation
channel) and the job config that reads it: what validate-data must name, in one place for the
one-process and the multi-process checks."""

from __future__ import annotations

import json
from pathlib import Path

from planting import (
    annotation,
    bomb_png,
    corrupt_jpeg,
    detection_label,
    jpeg,
    png,
    truncated,
    write_json_pair,
    write_records,
)
from ssd_sagemaker.data.formats.recordio import pack

OBJECT = (0, 5, 6, 20, 10)


def write_config(base: Path) -> None:
    config = base / "input" / "config"
    config.mkdir(parents=True)
    (config / "inputdataconfig.json").write_text(json.dumps({
        "train": {"ContentType": "image/jpeg"}, "train_annotation": {"ContentType": "image/jpeg"},
        "validation": {"ContentType": "application/x-recordio", "TrainingInputMode": "Pipe"}}))
    (config / "hyperparameters.json").write_text(json.dumps({
        "num_classes": "3", "num_training_samples": "10", "label_width": "12"}))


def broken_dataset(base: Path) -> dict[str, str]:
    """Plant one fault per file; returns {name in the report: text that must follow it}."""
    images, notes = base / "input/data/train", base / "input/data/train_annotation"
    faults = {}

    def plant(name, image, document, where, expected):
        write_json_pair(images, notes, name, image, document)
        faults[where] = expected

    write_json_pair(images, notes, "good", jpeg(), annotation("good.jpg"))
    plant("bad_json", jpeg(), '{"file": "bad_json.jpg",', "train_annotation/bad_json.json",
          "is not valid JSON")
    plant("no_image", None, annotation("no_image.jpg"), "train_annotation/no_image.json",
          "\"file\" 'no_image.jpg' does not exist")
    plant("lonely", jpeg(), None, "train/lonely.jpg", "has no annotation file")
    plant("escape", None, annotation("../../secret.jpg"), "train_annotation/escape.json",
          "points outside the image channel")
    plant("absolute", None, annotation("/etc/passwd"), "train_annotation/absolute.json",
          "is an absolute path")
    plant("outside", jpeg(), annotation("outside.jpg", objects=[(0, 50, 10, 30, 10)]),
          "train_annotation/outside.json", "lies 16 pixels outside the 64x48 image")
    plant("edge", jpeg(), annotation("edge.jpg", objects=[(0, 50, 10, 14.5, 10)]),
          "train_annotation/edge.json", "overshoots the 64x48 image by 0.5 pixel(s); clipped")
    plant("zero", jpeg(), annotation("zero.jpg", objects=[(0, 5, 5, 0, 10)]),
          "train_annotation/zero.json", "annotation 0 has width 0; box sizes must be positive")
    plant("class3", jpeg(), annotation("class3.jpg", objects=[(3, 5, 5, 10, 10)]),
          "train_annotation/class3.json", "annotation 0 has class_id 3")
    plant("class_text", jpeg(), annotation("class_text.jpg", objects=[("cat", 5, 5, 10, 10)]),
          "train_annotation/class_text.json", "annotation 0 has class_id 'cat'")
    plant("truncated", truncated(jpeg(seed=1)), annotation("truncated.jpg"),
          "train_annotation/truncated.json", "image truncated.jpg is truncated")
    plant("corrupt", corrupt_jpeg(), annotation("corrupt.jpg"),
          "train_annotation/corrupt.json", "image corrupt.jpg is a corrupt JPEG: its image data "
                                        "cannot be decoded")
    plant("bomb", bomb_png(), annotation("bomb.jpg"), "train_annotation/bomb.json",
          "(a decompression bomb?)")
    plant("noimage", b"hello", annotation("noimage.jpg"), "train_annotation/noimage.json",
          "is neither JPEG nor PNG data")

    good = pack(detection_label([OBJECT[:1] + (0.1, 0.1, 0.5, 0.5)]), jpeg(80, 60))
    records = [good,
               pack(detection_label([(5, 0.1, 0.1, 0.5, 0.5)]), jpeg(80, 60)),
               pack(detection_label([(0, 0.1, 0.1, 0.5, 0.5)] * 3), jpeg(80, 60)),
               pack(detection_label([(0, 0.1, 0.1, 0.5, 0.5)]), png()[:-30]),
               pack([2, 5, 0, 0.1], jpeg(80, 60))]
    write_records(base / "input/data/validation/val.rec", records)
    faults.update({
        "validation/val.rec record 1": "object 0 has class_id 5.0",
        "validation/val.rec record 2": "has a label of 17 numbers, more than label_width=12; "
                                       "set the hyperparameter label_width to at least 17",
        "validation/val.rec record 3": "image is truncated",
        "validation/val.rec record 4": "not a multiple of B=5",
    })
    return faults
