"""Helpers for end-to-end tests: run the real CLI as a subprocess on a temporary /opt/ml tree."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def cli_env(base_dir: Path, **extra: str) -> dict:
    """The environment a container would have: SAGEMAKER_BASE_DIR, and an empty model cache."""
    env = dict(os.environ)
    env.update(SAGEMAKER_BASE_DIR=str(base_dir), MXNET_HOME=str(base_dir / "mxnet_home"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")])),
               PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_cli(base_dir: Path, *args: str, timeout: float = 900, **extra: str):
    return subprocess.run([sys.executable, "-m", "ssd_sagemaker", *args], env=cli_env(base_dir, **extra),
                          capture_output=True, text=True, timeout=timeout)


def write_hyperparameters(base_dir: Path, values: dict) -> None:
    path = base_dir / "input" / "config" / "hyperparameters.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))


@pytest.fixture
def run():
    return run_cli
