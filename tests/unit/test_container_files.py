"""The container's files agree with the code they front: the entry point hands every CLI
subcommand to the CLI (a missing one ran as a shell command: exit 127), and docker/local's
example job is the demo's."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from ssd_sagemaker.cli import build_parser
from ssd_sagemaker.demo import DEMO_TRAIN_IMAGES, demo_hyperparameters

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "docker" / "entrypoint"


def _cli_subcommands() -> set[str]:
    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "command")
    return set(commands.choices)


def test_the_entrypoint_maps_every_cli_subcommand_to_the_cli():
    cases = re.search(r"^\s*([a-z|*-]+)\)\s*exec ssd-sagemaker", ENTRYPOINT.read_text(), re.M)
    assert cases is not None
    mapped = set(cases.group(1).split("|")) - {"-*"}
    assert mapped == _cli_subcommands()


def test_the_entrypoint_runs_a_subcommand_through_the_cli(tmp_path):
    fake = tmp_path / "ssd-sagemaker"
    fake.write_text('#!/bin/sh\necho "cli: $*"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    result = subprocess.run(["sh", str(ENTRYPOINT), "fetch-weights", "--timeout", "5"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout) == (0, "cli: fetch-weights --timeout 5\n")
    other = subprocess.run(["sh", str(ENTRYPOINT), "echo", "as given"], env=env,
                           capture_output=True, text=True, timeout=30)
    assert other.stdout == "as given\n"


def test_docker_local_trains_the_demo_job_from_imagenet_weights():
    config = ROOT / "docker" / "local" / "opt_ml" / "input" / "config" / "hyperparameters.json"
    assert json.loads(config.read_text()) == demo_hyperparameters(DEMO_TRAIN_IMAGES,
                                                                  pretrained=True)
