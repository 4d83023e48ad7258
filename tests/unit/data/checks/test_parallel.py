"""validate-data on every core (data/checks/parallel.py): the checks run in other processes,
the results come back in the examples' order, the report is the one of a single process, and
a corrupt file among many is named; the progress bar shows on a terminal, not in a log."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from broken_dataset import broken_dataset, write_config
from cli_runner import cli_env
from planting import annotation as json_annotation
from planting import (
    corrupt_jpeg,
    detection_label,
    image_records,
    jpeg,
    write_json_pair,
    write_records,
)
from ssd_sagemaker.data.checks import parallel
from ssd_sagemaker.data.checks.parallel import ProcessMap
from ssd_sagemaker.data.formats.recordio import pack
from ssd_sagemaker.data.validate_data import format_report, validate_channels
from ssd_sagemaker.environment import Paths, read_channels
from ssd_sagemaker.errors import AlgorithmError


def _pid_and_square(value: int) -> tuple[int, int]:
    return os.getpid(), value * value


def test_results_come_back_in_order_from_other_processes() -> None:
    with ProcessMap(2, chunk=16) as in_order:
        results = list(in_order(_pid_and_square, range(1000)))
    assert [square for _, square in results] == [value * value for value in range(1000)]
    assert os.getpid() not in {pid for pid, _ in results}
    assert len({pid for pid, _ in results}) == 2


def test_a_few_examples_are_checked_in_this_process() -> None:
    with ProcessMap(2, chunk=16) as in_order:
        results = list(in_order(_pid_and_square, range(31)))  # fewer than two chunks
    assert {pid for pid, _ in results} == {os.getpid()}
    assert [square for _, square in results] == [value * value for value in range(31)]


def test_a_worker_that_dies_stops_the_check_with_what_happened() -> None:
    """A pool process that ends mid-check (here `os._exit`, as the OOM killer would end it):
    an AlgorithmError saying a worker died and what to do, not a hang or a traceback."""
    with pytest.raises(AlgorithmError) as error, ProcessMap(2, chunk=16) as in_order:
        list(in_order(os._exit, [3] * 64))
    assert "a validate-data worker process died" in str(error.value)
    assert "with more memory" in str(error.value)


def test_several_processes_report_what_one_process_reports(tmp_path: Path, monkeypatch) -> None:
    """The planted faults of test_validate_data (both formats, duplicates of one image, class
    names, unannotated images) in chunks of 2 over 2 processes: the same report, line for line."""
    write_config(tmp_path)
    broken_dataset(tmp_path)
    images, notes = tmp_path / "input/data/train", tmp_path / "input/data/train_annotation"
    write_json_pair(images, notes, "twice", None, json_annotation("good.jpg"))  # good.jpg again
    write_json_pair(images, notes, "renamed", jpeg(seed=7), json_annotation(
        "renamed.jpg", categories=[{"class_id": 0, "name": "dog"}]))
    write_json_pair(images, notes, "z_named", jpeg(seed=8), json_annotation(
        "z_named.jpg", categories=[{"class_id": 0, "name": "cat"}]))
    paths = Paths(tmp_path)
    one = format_report(validate_channels(paths, read_channels(paths), 3, 12, workers=1))
    monkeypatch.setattr(parallel, "CHUNK", 2)
    several = format_report(validate_channels(paths, read_channels(paths), 3, 12, workers=2))
    assert several == one
    assert "train_annotation/twice.json: \"file\" 'good.jpg' is already annotated by " \
           "train_annotation/good.json" in one
    assert "train_annotation/z_named.json: category name 'cat' for class_id 0 conflicts " \
           "with 'dog' in train_annotation/renamed.json" in one
    assert "Channel train (image + JSON): 19 found, 3 used, 2 skipped, 14 with errors" in one


def test_a_corrupt_image_among_many_is_named(tmp_path: Path) -> None:
    """300 images in chunks of 64 over 2 processes, one corrupt JPEG at position 201, and a
    RecordIO channel of 300 records with one label too wide at record 150."""
    images, notes = tmp_path / "input/data/train", tmp_path / "input/data/train_annotation"
    for index in range(300):
        name = f"img_{index:03d}"
        body = corrupt_jpeg() if index == 201 else jpeg(seed=index)
        write_json_pair(images, notes, name, body, json_annotation(f"{name}.jpg"))
    records = image_records(300)
    records[150] = pack(detection_label([(0, 0.1, 0.1, 0.5, 0.5)] * 3), jpeg(80, 60))
    (tmp_path / "input/data/validation").mkdir(parents=True)
    write_records(tmp_path / "input/data/validation/val.rec", records)
    config = tmp_path / "input/config"
    config.mkdir(parents=True)
    (config / "inputdataconfig.json").write_text(json.dumps({
        "train": {"ContentType": "image/jpeg"}, "train_annotation": {"ContentType": "image/jpeg"},
        "validation": {"ContentType": "application/x-recordio"}}))
    paths = Paths(tmp_path)
    report = format_report(validate_channels(paths, read_channels(paths), 3, 12, workers=2))
    lines = report.splitlines()
    assert "Channel train (image + JSON): 300 found, 299 used, 0 skipped, 1 with errors" in lines
    errors = [line for line in lines if line.startswith("  error")]
    assert len(errors) == 2, report
    assert errors[0].startswith("  error   train_annotation/img_201.json: image img_201.jpg is "
                                "a corrupt JPEG: its image data cannot be decoded")
    assert errors[1] == ("  error   validation/val.rec record 150: has a label of 17 numbers, "
                         "more than label_width=12; set the hyperparameter label_width to at "
                         "least 17.")
    assert "Channel validation (RecordIO): 300 found, 299 used, 0 skipped, 1 with errors" in lines
    assert lines[-1] == "Result: problems in train, validation"


@pytest.mark.parametrize("terminal", [False, True])
def test_the_progress_bar_shows_on_a_terminal_and_not_in_a_log(tmp_path: Path,
                                                              terminal: bool) -> None:
    images, notes = tmp_path / "input/data/train", tmp_path / "input/data/train_annotation"
    for index in range(150):  # over two chunks: the pool runs
        write_json_pair(images, notes, f"img_{index:03d}", jpeg(seed=index),
                        json_annotation(f"img_{index:03d}.jpg"))
    config = tmp_path / "input/config"
    config.mkdir(parents=True)
    (config / "inputdataconfig.json").write_text(json.dumps({
        "train": {"ContentType": "image/jpeg"}, "train_annotation": {"ContentType": "image/jpeg"}}))
    env = cli_env(tmp_path)
    for name in ("TRAINING_JOB_NAME", "SSD_PROGRESS"):
        env.pop(name, None)
    reader, writer = pty.openpty() if terminal else os.pipe()
    if terminal:  # a new pseudo-terminal is 0 columns wide, and tqdm draws nothing in 0 columns
        fcntl.ioctl(writer, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    run = subprocess.Popen([sys.executable, "-m", "ssd_sagemaker", "validate-data",
                            "--num-classes", "3"], env=env, stdout=subprocess.PIPE,
                           stderr=writer)
    os.close(writer)
    stderr = b""
    while True:
        try:
            chunk = os.read(reader, 65536)
        except OSError:  # the terminal's other end closed
            break
        if not chunk:
            break
        stderr += chunk
    os.close(reader)
    stdout = run.communicate(timeout=300)[0].decode()
    assert run.returncode == 0, stdout + stderr.decode(errors="replace")
    assert "Channel train (image + JSON): 150 found, 150 used, 0 skipped, 0 with errors" in stdout
    text = stdout + stderr.decode(errors="replace")
    # the bar does not stay (leave=False) and may close before it redraws at 150: any drawing
    bar = [part for part in text.split("\r") if "validate-data: train: " in part
           and "example/s]" in part]
    logged = "validate-data: train: 150 example(s), " in text
    assert (bool(bar), logged) == ((True, False) if terminal else (False, True)), text
