"""The command line's conventions: --version, each subcommand's help says what it reads and
writes, its variables, exit codes and an example; usage errors exit 64 (our faults exit 2);
log lines at WARNING and above go to stderr while information stays on stdout."""

from __future__ import annotations

import pytest

from cli_runner import run_cli
from ssd_sagemaker.cli import COMMAND_HELP, build_parser


def _subcommands() -> list[str]:
    parser = build_parser()
    return sorted(next(a for a in parser._actions if a.dest == "command").choices)


def test_every_subcommand_has_its_help():
    assert sorted(COMMAND_HELP) == _subcommands()


def test_version_names_the_package_and_the_stack(tmp_path):
    result = run_cli(tmp_path, "--version", timeout=60, separate=True)
    assert result.returncode == 0
    assert result.stdout.startswith("ssd-sagemaker 0.1.0 (MXNet 1.9.1, GluonCV 0.10.5.post0, "
                                    "numpy 1.23.5, Python 3.11.")


@pytest.mark.parametrize("command", _subcommands())
def test_each_subcommand_help_says_what_it_reads_writes_and_returns(tmp_path, command):
    result = run_cli(tmp_path, command, "--help", timeout=60, separate=True)
    assert result.returncode == 0
    for heading in ("reads:", "writes:", "variables:", "exit codes:", "example:"):
        assert f"\n{heading}\n" in result.stdout, (command, heading)
    assert "64   usage" in result.stdout and "ssd-sagemaker " in result.stdout.split("example:")[1]


@pytest.mark.parametrize("argv", [("trian",), ("train", "--epochs", "3"), ("predict",),
                                  ("convert", "coco")])
def test_usage_errors_exit_64_on_stderr(tmp_path, argv):
    result = run_cli(tmp_path, *argv, timeout=60, separate=True)
    assert result.returncode == 64
    assert "error:" in result.stderr and result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_information_on_stdout_problems_on_stderr(tmp_path):
    made = run_cli(tmp_path, "demo-data", "--train-images", "2", "--validation-images", "1",
                   timeout=120, separate=True)
    assert made.returncode == 0
    assert "INFO ssd_sagemaker.demo: demo data: 2 training" in made.stdout
    assert made.stderr == ""
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text('{"epochs": "0"}')
    refused = run_cli(tmp_path, "train", timeout=120, separate=True)
    assert refused.returncode == 1
    assert "ERROR ssd_sagemaker.errors: ClientError: Invalid hyperparameters" in refused.stderr
    assert "ClientError" not in refused.stdout
