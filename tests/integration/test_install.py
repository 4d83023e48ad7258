"""A pip install outside Docker, as the README's "Without Docker" section does it, in a fresh
virtual environment: the package with its dependencies at the lock's versions, then
scripts/use_headless_opencv.sh. It ends with a working headless `cv2` (gluoncv's GUI build
removed: it needs libGL, which headless hosts lack) and a working `ssd-sagemaker`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # installs MXNet, GluonCV and the rest (from pip's cache in CI)

ROOT = Path(__file__).resolve().parents[2]


def _run(*command: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_a_pip_install_ends_with_headless_opencv_and_a_working_cli(tmp_path):
    venv = tmp_path / "venv"
    python = str(venv / "bin" / "python")
    assert _run(sys.executable, "-m", "venv", str(venv)).returncode == 0
    installed = _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                     "-c", str(ROOT / "constraints.txt"), str(ROOT))
    assert installed.returncode == 0, installed.stderr[-3000:]
    swapped = _run("sh", str(ROOT / "scripts" / "use_headless_opencv.sh"), python)
    assert swapped.returncode == 0, swapped.stderr[-3000:]
    assert _run(python, "-m", "pip", "show", "opencv-python").returncode != 0  # GUI build gone
    mapped = _run(python, "-c", "import cv2; print(cv2.imdecode is not None); "
                                "print(open('/proc/self/maps').read())")
    assert mapped.returncode == 0, mapped.stderr[-2000:]
    assert mapped.stdout.startswith("True\n") and "libGL" not in mapped.stdout
    version = _run(str(venv / "bin" / "ssd-sagemaker"), "--version")
    assert version.returncode == 0 and version.stdout.startswith("ssd-sagemaker 0.1.0 (MXNet 1.9.1")
    # the package ships no test extras: pytest is not pulled in
    assert _run(python, "-c", "import pytest").returncode != 0
