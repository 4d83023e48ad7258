"""Build tests/support/fake_cuda.c into a folder as `libcuda.so.1` and `libnvrtc.so.11.2`: put
the folder on LD_LIBRARY_PATH and the FAKE_* variables in the environment of the process that
reads the GPUs (the probe child inherits both)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).with_name("fake_cuda.c")
H100 = "NVIDIA H100 80GB HBM3|9|0|81559"
A10G = "NVIDIA A10G|8|6|22731"
L4 = "NVIDIA L4|8|9|23034"
NVRTC_11_2_ARCHS = "35,37,50,52,53,60,61,62,70,72,75,80,86"
NVRTC_11_8_ARCHS = NVRTC_11_2_ARCHS + ",87,89,90"


def build_fake_cuda(folder: Path) -> Path:
    """The folder holding the fake driver and NVRTC (skips when no C compiler is installed)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the fake libcuda.so.1")
    folder.mkdir(parents=True, exist_ok=True)
    library = folder / "libcuda.so.1"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(SOURCE)], check=True,
                   timeout=60)
    shutil.copy(library, folder / "libnvrtc.so.11.2")
    return folder
