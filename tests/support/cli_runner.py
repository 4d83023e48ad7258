"""Run the real CLI as a subprocess on a temporary /opt/ml tree, as a container would.

A module with its own name (not `conftest`): test modules import it, and any mix of test
folders in one pytest run still finds it (several `conftest` modules cannot share that name)."""

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
# For jobs of tests that judge something else than precision: `precision=auto` (the default)
# proves bfloat16 on the first batch where the CPU has it, 7 of a one-epoch VGG-16 job's 20 s
# here (test_train_serve.py and tests/unit/training judge `auto` and bfloat16).
FLOAT32 = {"precision": "float32"}


def cli_env(base_dir: Path, **extra: str) -> dict:
    """The environment a container would have: SAGEMAKER_BASE_DIR, and an empty model cache."""
    env = dict(os.environ)
    env.update(SAGEMAKER_BASE_DIR=str(base_dir), MXNET_HOME=str(base_dir / "mxnet_home"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")])),
               PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_cli(base_dir: Path, *args: str, timeout: float = 900, separate: bool = False,
            **extra: str) -> subprocess.CompletedProcess:
    """`python -m ssd_sagemaker ARGS` under `base_dir`, output captured, bounded by `timeout`.
    The CLI logs warnings and errors on stderr: by default both streams are read as one, in
    order, as CloudWatch collects them (`stdout`; `stderr` empty); `separate` keeps them apart."""
    result = subprocess.run([sys.executable, "-m", "ssd_sagemaker", *args],
                            env=cli_env(base_dir, **extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE if separate else subprocess.STDOUT, text=True,
                            timeout=timeout)
    if not separate:
        result.stderr = ""
    return result


def write_hyperparameters(base_dir: Path, values: dict) -> None:
    """Where SageMaker puts the job's hyperparameters."""
    path = base_dir / "input" / "config" / "hyperparameters.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))


def write_demo_job(base_dir: Path, hyperparameters: dict, train_images: int,
                   validation_images: int, timeout: float = 900) -> None:
    """`demo-data`'s synthetic channels under `base_dir` (asserted written), then the job's
    hyperparameters in place of the demo's."""
    made = run_cli(base_dir, "demo-data", "--train-images", str(train_images),
                   "--validation-images", str(validation_images), timeout=timeout)
    assert made.returncode == 0, made.stdout + made.stderr
    write_hyperparameters(base_dir, hyperparameters)
