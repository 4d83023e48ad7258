"""The GPU image's environment (Dockerfile, docker/requirements.py): NVRTC 11.8 installed and
first on LD_LIBRARY_PATH (it compiles MXNet's fusion for sm_89), cuDNN's version check off.
The build itself (by hand: podman build --build-arg FLAVOUR=gpu) proves with ldd that
libnvrtc.so.11.2 resolves there and that it lists compute_89."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _final_stage_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM system"):]
    block = re.search(r"\nENV (.*?)\n(?!\s)", final, re.S)
    assert block, "no ENV in the final stage"
    pairs = re.findall(r"(\w+)=(\S+)", block.group(1).replace("\\\n", " "))
    return dict(pairs)


def test_the_gpu_requirements_pin_nvrtc_11_8():
    listed = subprocess.run([sys.executable, str(ROOT / "docker/requirements.py"), "gpu",
                             str(ROOT / "pyproject.toml")], capture_output=True, text=True,
                            check=True, timeout=60).stdout.splitlines()
    assert "nvidia-cuda-nvrtc-cu11>=11.8,<11.9" in listed
    assert any(line.startswith("mxnet-cu112==1.9.1") for line in listed)


def test_the_image_puts_nvrtc_first_and_turns_the_cudnn_check_off():
    env = _final_stage_env()
    assert env["LD_LIBRARY_PATH"].split(":")[0].endswith("/site-packages/nvidia/cuda_nvrtc/lib")
    assert env["MXNET_CUDNN_LIB_CHECKING"] == "0"
    assert "MXNET_CUDNN_AUTOTUNE_DEFAULT" not in env  # serving sets its own; training keeps 1
