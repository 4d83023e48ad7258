"""Which GPUs the installed MXNet build can run on, decided before any GPU work.

`mxnet-cu112==1.9.1`'s `libmxnet.so` carries cubins for sm_50, 60, 70, 80 and 86 and no PTX
(read with cuobjdump; its `linux_cu112.cmake` sets `MXNET_CUDA_ARCH "5.0;6.0;7.0;8.0;8.6"`).
A cubin runs on GPUs of the same major architecture and an equal or higher minor one; without
PTX nothing is compiled for newer majors: on an H100 (9.0) or a K80 (3.7) the first MXNet
kernel fails with CUDA error 209 (no kernel image). `check_gpus` turns that into a ClientError
at start, and switches MXNet's pointwise fusion off where the NVRTC in place cannot compile for
the GPU (CUDA 11.2's NVRTC rejects compute_89; 11.8's accepts it).

`CUDA_BUILDS` and `SAGEMAKER_GPUS` are the one table of this knowledge: the README's "GPU
instance types" table is generated from them (scripts/update_readme.py)."""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from dataclasses import dataclass
from importlib import metadata

from ssd_sagemaker.cuda_driver import Gpu, Nvrtc, Probe, probe_in_child
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.variables import MXNET_USE_FUSION

LOG = logging.getLogger(__name__)

FUSION_VARIABLE = MXNET_USE_FUSION
CPU_ALTERNATIVE = "the CPU image (FLAVOUR=cpu) on a CPU instance such as ml.c5 or ml.m5"


@dataclass(frozen=True)
class CudaBuild:
    """An MXNet GPU wheel: the compute capabilities it has machine code (cubins) for, those it
    has PTX for (compiled by the driver for newer GPUs), and the NVRTC soname it loads for
    pointwise fusion."""

    distribution: str
    version: str  # the release whose binaries were read
    cubins: tuple[tuple[int, int], ...]
    ptx: tuple[tuple[int, int], ...]
    nvrtc_soname: str

    def kernels_for(self, capability: tuple[int, int]) -> str | None:
        """What runs on a GPU of this capability: 'sm_XY cubins', 'compute_XY PTX' or None."""
        major, minor = capability
        cubins = [c for c in self.cubins if c[0] == major and c[1] <= minor]
        if cubins:
            best = max(cubins)
            return f"sm_{best[0]}{best[1]} cubins"
        ptx = [p for p in self.ptx if p <= capability]
        if ptx:
            best = max(ptx)
            return f"compute_{best[0]}{best[1]} PTX"
        return None

    @property
    def archs_text(self) -> str:
        cubins = ", ".join(f"sm_{a}{b}" for a, b in self.cubins)
        ptx = ", ".join(f"compute_{a}{b}" for a, b in self.ptx) or "no PTX"
        return f"{cubins}; {ptx}"


CUDA_BUILDS = {
    "mxnet-cu112": CudaBuild("mxnet-cu112", "1.9.1", ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6)), (),
                             "libnvrtc.so.11.2"),
}
# The NVRTC the GPU image puts first on LD_LIBRARY_PATH (nvidia-cuda-nvrtc-cu11 11.8.x, soname
# libnvrtc.so.11.2): what the README table assumes.
IMAGE_NVRTC = Nvrtc((11, 8))
# The newest compute_XY each NVRTC release compiles for, used when the library cannot list them.
NVRTC_NEWEST_ARCH = (((11, 8), 90), ((11, 5), 87), ((11, 1), 86), ((11, 0), 80))


@dataclass(frozen=True)
class SageMakerGpu:
    """A row of the README's GPU table: SageMaker instance families with one GPU model."""

    families: tuple[str, ...]
    gpu: str
    capability: tuple[int, int]


SAGEMAKER_GPUS = (
    SageMakerGpu(("ml.p2",), "K80", (3, 7)),
    SageMakerGpu(("ml.p3", "ml.p3dn"), "V100", (7, 0)),
    SageMakerGpu(("ml.g4dn",), "T4", (7, 5)),
    SageMakerGpu(("ml.p4d", "ml.p4de"), "A100", (8, 0)),
    SageMakerGpu(("ml.g5",), "A10G", (8, 6)),
    SageMakerGpu(("ml.g6",), "L4", (8, 9)),
    SageMakerGpu(("ml.g6e",), "L40S", (8, 9)),
    SageMakerGpu(("ml.p5", "ml.p5e", "ml.p5en"), "H100/H200", (9, 0)),
)


@dataclass(frozen=True)
class Verdict:
    """What the build can do on one GPU: `kernels` None means it cannot run there at all;
    `fusion` False means MXNet's pointwise fusion must be off (NVRTC cannot compile for it)."""

    capability: tuple[int, int]
    kernels: str | None
    fusion: bool

    @property
    def usable(self) -> bool:
        return self.kernels is not None

    def describe(self) -> str:
        if self.kernels is None:
            return "refused: no kernels for this compute capability"
        native = self.kernels == f"sm_{self.capability[0]}{self.capability[1]} cubins"
        how = "native cubins" if native else self.kernels + " (same major)"
        return how + ("" if self.fusion else "; pointwise fusion off (NVRTC lacks the arch)")


def nvrtc_compiles_for(nvrtc: Nvrtc | None, capability: tuple[int, int]) -> bool:
    """True when MXNet's run-time fusion can compile `compute_XY` for this GPU: NVRTC's own
    list when it gives one, else the newest architecture its version is known to compile for."""
    arch = capability[0] * 10 + capability[1]
    if nvrtc is None:
        return False
    if nvrtc.archs:
        return arch in nvrtc.archs
    newest = next((a for version, a in NVRTC_NEWEST_ARCH if nvrtc.version >= version), 0)
    return arch <= newest


def assess(capability: tuple[int, int], build: CudaBuild, nvrtc: Nvrtc | None) -> Verdict:
    kernels = build.kernels_for(capability)
    return Verdict(capability, kernels, kernels is not None
                   and nvrtc_compiles_for(nvrtc, capability))


def supported_families(build: CudaBuild, nvrtc: Nvrtc | None = IMAGE_NVRTC) -> list[str]:
    """'ml.p3/ml.p3dn (V100)', … for every table row the build runs on."""
    return [f"{'/'.join(row.families)} ({row.gpu})" for row in SAGEMAKER_GPUS
            if assess(row.capability, build, nvrtc).usable]


def refusal(gpu: Gpu, build: CudaBuild, version: str) -> str:
    """The ClientError sentence for a GPU the build cannot run on."""
    known = [row for row in SAGEMAKER_GPUS if row.capability == gpu.capability]
    family = f" (SageMaker {'/'.join(known[0].families)})" if known else ""
    return (f"GPU {gpu.index} '{gpu.name}'{family} has compute capability "
            f"{gpu.capability_text}, which {build.distribution}=={version} cannot run (it has "
            f"kernels for {build.archs_text}): its first kernel would fail with CUDA error 209. "
            f"Use an instance with a supported GPU: {', '.join(supported_families(build))}; "
            f"or {CPU_ALTERNATIVE}.")


def no_driver(build: CudaBuild, version: str) -> str:
    """The ClientError sentence for the GPU build on a machine without the NVIDIA driver."""
    return (f"This is the GPU image ({build.distribution}=={version}), whose MXNet cannot even "
            f"be loaded without the NVIDIA driver (libcuda.so.1), and no driver is visible. Run "
            f"it on a GPU instance with the NVIDIA container runtime (SageMaker's GPU instances "
            f"do this; docker run --gpus all), or use {CPU_ALTERNATIVE}.")


def require_driver() -> None:
    """With MXNet's GPU build installed, a ClientError unless the driver is there (before
    anything imports MXNet, which would fail with an OSError)."""
    found = installed_cuda_build()
    if found is not None and inspect_gpus(found).probe.driver_version is None:
        raise ClientError(no_driver(*found))


def installed_cuda_build() -> tuple[CudaBuild, str] | None:
    """The installed MXNet GPU wheel and its version; None for the CPU wheel (GPUs unused)."""
    for name, build in CUDA_BUILDS.items():
        try:
            return build, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


@dataclass(frozen=True)
class GpuCheck:
    """The outcome of `check_gpus`: the build (None: CPU wheel), the probe, each GPU's verdict."""

    build: CudaBuild | None
    version: str | None
    probe: Probe
    verdicts: tuple[Verdict, ...]


def inspect_gpus(build_and_version: tuple[CudaBuild, str] | None, probe: Probe | None = None
                 ) -> GpuCheck:
    """Every visible GPU with its verdict, without acting on it (the selftest shows them)."""
    build, version = build_and_version or (None, None)
    if probe is None:
        probe = probe_in_child(build.nvrtc_soname if build else None)
    verdicts = (tuple(assess(gpu.capability, build, probe.nvrtc) for gpu in probe.gpus)
                if build else ())
    return GpuCheck(build, version, probe, verdicts)


def apply_gpu_check(check: GpuCheck, environ: MutableMapping[str, str] = os.environ) -> None:
    """Refuse GPUs the build cannot run on (ClientError); switch fusion off where needed."""
    if check.build is None:
        return
    if check.probe.driver_version is None:
        raise ClientError(no_driver(check.build, check.version or "?"))
    if check.version != check.build.version:
        LOG.warning("%s %s is installed; the GPU table was read from %s's binaries",
                    check.build.distribution, check.version, check.build.version)
    if check.probe.error:
        LOG.warning("the NVIDIA driver could not list the GPUs (%s): MXNet will decide",
                    check.probe.error)
    for gpu, verdict in zip(check.probe.gpus, check.verdicts):
        if not verdict.usable:
            raise ClientError(refusal(gpu, check.build, check.version or "?"))
        LOG.info("GPU %d %s, compute capability %s, %.1f GiB: %s", gpu.index, gpu.name,
                 gpu.capability_text, gpu.memory_bytes / 2**30, verdict.describe())
    if not check.probe.gpus:
        LOG.info("the NVIDIA driver sees no GPU: MXNet uses the CPU")
        return
    _choose_fusion(check, environ)


def _choose_fusion(check: GpuCheck, environ: MutableMapping[str, str]) -> None:
    """Pointwise fusion off when NVRTC cannot compile for some GPU (unless the user chose)."""
    nvrtc = check.probe.nvrtc
    nvrtc_text = (f"NVRTC {nvrtc.version[0]}.{nvrtc.version[1]}" if nvrtc
                  else f"no NVRTC ({check.build.nvrtc_soname if check.build else '?'} not found)")
    lacking = sorted({gpu.capability_text for gpu, verdict in zip(check.probe.gpus,
                                                                  check.verdicts)
                      if not verdict.fusion})
    if FUSION_VARIABLE in environ:
        LOG.info("%s=%s as set; %s", FUSION_VARIABLE, environ[FUSION_VARIABLE], nvrtc_text)
    elif lacking:
        environ[FUSION_VARIABLE] = "0"
        LOG.info("%s cannot compile for compute capability %s: %s=0 (MXNet's pointwise fusion "
                 "off, plain kernels)", nvrtc_text, ", ".join(lacking), FUSION_VARIABLE)
    else:
        LOG.info("%s compiles for every GPU: MXNet's pointwise fusion stays on", nvrtc_text)


def check_gpus(environ: MutableMapping[str, str] = os.environ) -> GpuCheck:
    """Run before any GPU work (train, serve, predict): with MXNet's GPU wheel installed, read
    the GPUs (in a child process) and refuse or configure as `apply_gpu_check` says."""
    found = installed_cuda_build()
    if found is None:
        return GpuCheck(None, None, Probe(), ())
    check = inspect_gpus(found)
    apply_gpu_check(check, environ)
    return check


def gpu_table(build: CudaBuild = CUDA_BUILDS["mxnet-cu112"], nvrtc: Nvrtc = IMAGE_NVRTC) -> str:
    """The README's "GPU instance types" table, from `SAGEMAKER_GPUS` and the build."""
    version = build.version
    rows = ["| instance types | GPU | compute capability | status | notes |",
            "|---|---|---|---|---|"]
    for row in SAGEMAKER_GPUS:
        verdict = assess(row.capability, build, nvrtc)
        legacy = assess(row.capability, build, Nvrtc((11, 2), ()))
        status = "runs" if verdict.usable else "**refused at start**"
        if not verdict.usable:
            notes = (f"{build.distribution}=={version} has no kernels for it ({build.archs_text}): "
                     f"a ClientError at start instead of CUDA error 209; use another type or CPU")
        else:
            notes = verdict.describe()
            if not legacy.fusion:
                notes += (f"; pointwise fusion compiled by the image's NVRTC "
                          f"{nvrtc.version[0]}.{nvrtc.version[1]} (with an older NVRTC "
                          f"{FUSION_VARIABLE}=0 is set automatically)")
        families = ", ".join(f"`{family}`" for family in row.families)
        capability = f"{row.capability[0]}.{row.capability[1]}"
        rows.append(f"| {families} | {row.gpu} | {capability} | {status} | {notes} |")
    return "\n".join(rows)

