"""`validate-data` on a deliberately broken dataset names every planted fault (file or record,
and what is wrong), counts them, and exits non-zero; a clean dataset passes."""

from __future__ import annotations

from pathlib import Path

from broken_dataset import broken_dataset, write_config
from cli_runner import run_cli
from ssd_sagemaker.cli import main


def test_every_planted_fault_is_named(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    write_config(tmp_path)
    faults = broken_dataset(tmp_path)
    assert main(["validate-data"]) == 1
    report = capsys.readouterr().out
    lines = report.splitlines()
    for where, expected in faults.items():
        matching = [line for line in lines if f" {where}: " in line and expected in line]
        assert matching, f"{where}: {expected!r} not in the report:\n{report}"
    # 14 annotation files + 2 images without one (lonely.jpg, and bad_json.jpg whose JSON is
    # unreadable); used: good and edge (clipped).
    assert "Channel train (image + JSON): 16 found, 2 used, 2 skipped, 12 with errors" in report
    assert "Channel validation (RecordIO): 5 found, 1 used, 0 skipped, 4 with errors" in report
    assert "training would refuse this channel" in report
    assert lines[-1] == "Result: problems in train, validation"
    assert not (tmp_path / "output" / "failure").exists()  # a report, not a failed job


def test_clean_dataset_passes(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    assert main(["demo-data", "--train-images", "3", "--validation-images", "2"]) == 0
    capsys.readouterr()
    assert main(["validate-data"]) == 0
    report = capsys.readouterr().out
    assert "Channel train (image + JSON): 3 found, 3 used, 0 skipped, 0 with errors" in report
    assert "classes {0: 'circle', 1: 'square', 2: 'triangle'}" in report
    assert report.splitlines()[-1] == "Result: all channels valid"


def test_validate_data_shows_its_progress_per_channel(tmp_path: Path) -> None:
    """A progress line per channel when nobody watches a terminal (a bar when one does)."""
    made = run_cli(tmp_path, "demo-data", "--train-images", "3", "--validation-images", "2",
                   timeout=120)
    assert made.returncode == 0
    checked = run_cli(tmp_path, "validate-data", timeout=300)
    assert checked.returncode == 0, checked.stdout[-2000:]
    assert "validate-data: train: 3 example(s), " in checked.stdout
    assert "validate-data: validation: 2 example(s), " in checked.stdout


def test_num_classes_is_needed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    assert main(["validate-data"]) == 1
