"""What the NVIDIA driver and NVRTC say about this machine, read through `ctypes` (no MXNet, no
CUDA toolkit): each visible GPU's name, compute capability and memory; NVRTC's version and the
architectures it compiles for.

`cuInit` in a process that later forks breaks CUDA in the children (the gunicorn master forks
its workers), so callers use `probe_in_child`: the driver is read by `python -m
ssd_sagemaker.cuda_driver` in a short-lived child process that prints JSON."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from dataclasses import asdict, dataclass

from ssd_sagemaker.errors import AlgorithmError

DRIVER_LIBRARY = "libcuda.so.1"
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
CUDA_ERROR_NO_DEVICE = 100
PROBE_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Gpu:
    """One GPU as the driver reports it (`index` as CUDA numbers the visible devices)."""

    index: int
    name: str
    capability: tuple[int, int]
    memory_bytes: int

    @property
    def capability_text(self) -> str:
        return f"{self.capability[0]}.{self.capability[1]}"


@dataclass(frozen=True)
class Nvrtc:
    """The NVRTC library that would be loaded: its version and the `compute_XY` architectures
    it accepts (`archs` empty when the library cannot list them)."""

    version: tuple[int, int]
    archs: tuple[int, ...] = ()


@dataclass(frozen=True)
class Probe:
    """The machine's CUDA view: `driver_version` None when there is no driver (a CPU machine)."""

    driver_version: int | None = None
    gpus: tuple[Gpu, ...] = ()
    nvrtc: Nvrtc | None = None
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Probe:
        raw = json.loads(text)
        gpus = tuple(Gpu(g["index"], g["name"], tuple(g["capability"]), g["memory_bytes"])
                     for g in raw["gpus"])
        nvrtc = raw["nvrtc"] and Nvrtc(tuple(raw["nvrtc"]["version"]),
                                       tuple(raw["nvrtc"]["archs"]))
        return cls(raw["driver_version"], gpus, nvrtc, raw["error"])


def _load(name: str) -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def read_driver(library: str = DRIVER_LIBRARY) -> tuple[int | None, tuple[Gpu, ...], str | None]:
    """(driver version, GPUs, error): (None, (), None) without a driver library."""
    cuda = _load(library)
    if cuda is None:
        return None, (), None
    status = cuda.cuInit(0)
    version = ctypes.c_int(0)
    cuda.cuDriverGetVersion(ctypes.byref(version))
    if status == CUDA_ERROR_NO_DEVICE:
        return version.value, (), None
    if status != 0:
        return version.value, (), f"cuInit failed with CUDA error {status}"
    count = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return version.value, (), "cuDeviceGetCount failed"
    gpus: list[Gpu] = []
    for index in range(count.value):
        device, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
        name = ctypes.create_string_buffer(256)
        memory = ctypes.c_size_t(0)
        failed = (cuda.cuDeviceGet(ctypes.byref(device), index)
                  or cuda.cuDeviceGetName(name, len(name), device)
                  or cuda.cuDeviceGetAttribute(ctypes.byref(major),
                                               CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)
                  or cuda.cuDeviceGetAttribute(ctypes.byref(minor),
                                               CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)
                  or cuda.cuDeviceTotalMem_v2(ctypes.byref(memory), device))
        if failed:
            return (version.value, tuple(gpus),
                    f"reading GPU {index} failed with CUDA error {failed}")
        gpus.append(Gpu(index, name.value.decode(errors="replace"), (major.value, minor.value),
                        memory.value))
    return version.value, tuple(gpus), None


def read_nvrtc(soname: str) -> Nvrtc | None:
    """NVRTC's version and accepted architectures (`nvrtcGetSupportedArchs`, CUDA ≥ 11.2)."""
    nvrtc = _load(soname)
    if nvrtc is None:
        return None
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    if nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)) != 0:
        return None
    archs: tuple[int, ...] = ()
    if hasattr(nvrtc, "nvrtcGetNumSupportedArchs"):
        count = ctypes.c_int(0)
        if nvrtc.nvrtcGetNumSupportedArchs(ctypes.byref(count)) == 0 and count.value > 0:
            listed = (ctypes.c_int * count.value)()
            if nvrtc.nvrtcGetSupportedArchs(listed) == 0:
                archs = tuple(listed)
    return Nvrtc((major.value, minor.value), archs)


def read_runtime_versions() -> dict[str, str]:
    """The versions of the CUDA runtime and cuDNN that MXNet's GPU build loads (only the
    libraries found: none on a CPU machine)."""
    versions = {}
    cudart = _load("libcudart.so.11.0")
    if cudart is not None:
        version = ctypes.c_int(0)
        if cudart.cudaRuntimeGetVersion(ctypes.byref(version)) == 0:
            versions["cudart"] = f"{version.value // 1000}.{version.value % 1000 // 10}"
    cudnn = _load("libcudnn.so.8")
    if cudnn is not None:
        cudnn.cudnnGetVersion.restype = ctypes.c_size_t
        number = cudnn.cudnnGetVersion()
        versions["cudnn"] = f"{number // 1000}.{number % 1000 // 100}.{number % 100}"
    return versions


def probe(nvrtc_soname: str | None) -> Probe:
    """Read the driver and NVRTC in this process (which then has CUDA initialised)."""
    driver_version, gpus, error = read_driver()
    nvrtc = read_nvrtc(nvrtc_soname) if nvrtc_soname and driver_version is not None else None
    return Probe(driver_version, gpus, nvrtc, error)


def probe_in_child(nvrtc_soname: str | None, timeout: float = PROBE_TIMEOUT_SECONDS) -> Probe:
    """`probe` in a child process, so that this process never initialises CUDA."""
    command = [sys.executable, "-m", "ssd_sagemaker.cuda_driver", nvrtc_soname or ""]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AlgorithmError(f"reading the GPUs through {DRIVER_LIBRARY} did not finish in "
                             f"{timeout:.0f} s; check the NVIDIA driver (nvidia-smi)") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise AlgorithmError(f"reading the GPUs through {DRIVER_LIBRARY} failed (exit "
                             f"{done.returncode}): {last}")
    return Probe.from_json(done.stdout)


if __name__ == "__main__":
    print(probe(sys.argv[1] if len(sys.argv) > 1 else None).to_json())
