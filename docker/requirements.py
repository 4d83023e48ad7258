"""Print the image's pip requirements for one flavour, derived from pyproject.toml's
dependencies so that the package list exists once.

    python3 docker/requirements.py cpu|gpu pyproject.toml > requirements.txt

cpu: the dependencies as declared (`mxnet==1.9.1`). gpu: `mxnet` becomes `mxnet-cu112` at the
same version, plus the CUDA 11 runtime wheels that provide every library `libmxnet.so` of
mxnet-cu112 links against except the driver's `libcuda.so.1` (which the NVIDIA container
runtime mounts from the host). Both: `dumb-init`, the container's PID 1 (signal forwarding).
"""

from __future__ import annotations

import re
import sys
import tomllib

# libcudart.so.11.0, libcublas.so.11, libcufft.so.10, libcurand.so.10, libcusolver.so.11,
# libnvrtc.so.11.2, libnvToolsExt.so.1, libcudnn.so.8, libnccl.so.2 (see shared facts).
CUDA_11_WHEELS = (
    "nvidia-cuda-runtime-cu11",
    "nvidia-cublas-cu11",
    "nvidia-cufft-cu11",
    "nvidia-curand-cu11",
    "nvidia-cusolver-cu11",
    "nvidia-cuda-nvrtc-cu11>=11.8,<11.9",  # compiles MXNet's fusion for sm_89 (11.2's cannot)
    "nvidia-nvtx-cu11",
    "nvidia-cudnn-cu11<9",
    "nvidia-nccl-cu11",
)
IMAGE_ONLY = ("dumb-init==1.2.5.post1",)


def requirements(dependencies: list[str], flavour: str) -> list[str]:
    if flavour == "cpu":
        return [*dependencies, *IMAGE_ONLY]
    if flavour != "gpu":
        raise SystemExit(f"error: FLAVOUR must be cpu or gpu, not {flavour!r}")
    swapped = [re.sub(r"^mxnet(?=\s*(==|>=|<|~=|$))", "mxnet-cu112", dep) for dep in dependencies]
    if swapped == dependencies:
        raise SystemExit("error: pyproject.toml declares no `mxnet` dependency to swap for mxnet-cu112")
    return [*swapped, *CUDA_11_WHEELS, *IMAGE_ONLY]


def main(argv: list[str]) -> None:
    flavour, pyproject = argv[1], argv[2]
    with open(pyproject, "rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    print("\n".join(requirements(dependencies, flavour)))


if __name__ == "__main__":
    main(sys.argv)
