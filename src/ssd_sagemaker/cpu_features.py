"""What the CPU can execute natively, read from /proc/cpuinfo (no MXNet import: the serving
master decides before MXNet is loaded, and tests fake the file)."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

from ssd_sagemaker.variables import OMP_NUM_THREADS

CPUINFO = Path("/proc/cpuinfo")
CPU_BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPU_INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The first CPU's flags; empty when the file cannot be read (not Linux, no /proc)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_bfloat16(cpuinfo: Path = CPUINFO) -> bool:
    """True when the CPU executes bfloat16 natively (oneDNN otherwise emulates it, slowly, or
    has no bfloat16 kernel at all: on AVX2 a bfloat16 convolution fails to build)."""
    return bool(CPU_BFLOAT16_FLAGS & cpu_flags(cpuinfo))


def cpu_has_int8_dot_product(cpuinfo: Path = CPUINFO) -> bool:
    """True with VNNI or AMX: one instruction per INT8 multiply-accumulate. Without them
    oneDNN still runs INT8 (AVX2), with three instructions where VNNI needs one."""
    return bool(CPU_INT8_DOT_FLAGS & cpu_flags(cpuinfo))


def use_every_cpu_for_openmp(environ: MutableMapping[str, str] = os.environ) -> None:
    """Size MXNet's OpenMP pool to every CPU this process may run on, unless OMP_NUM_THREADS
    says otherwise; to be called before MXNet is imported. MXNet's default is half the CPUs on
    x86: training would use one of two cores (measured: 1.19 → 2.22 images/s with both). The
    pool's size also fixes the order of the kernels' sums, so two processes compute bit-identical
    results only with equal pools (the benchmarks' reference loop calls this too)."""
    environ.setdefault(OMP_NUM_THREADS, str(len(os.sched_getaffinity(0))))
