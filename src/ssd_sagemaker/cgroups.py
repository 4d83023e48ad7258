"""The container's CPU and memory limits, read from its cgroup (v1 or v2): `os.sched_getaffinity`
and `os.cpu_count` see neither. Serving sizes its workers by them, validate-data its pool."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as 2^63 rounded down to a page


@dataclass(frozen=True)
class CgroupLimits:
    """The container's limits: memory in bytes and CPUs (quota / period), None when unlimited;
    `memory_source` and `cpu_source` name the files they were read from."""

    memory_bytes: int | None = None
    cpus: float | None = None
    memory_source: str = "no cgroup memory limit"
    cpu_source: str = "no cgroup CPU quota"
    memory_file: Path | None = None  # where the memory limit was read (v2 or v1)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _memory(text: str | None) -> int | None:
    if text is None or text == "max" or not text.isdigit():
        return None
    value = int(text)
    return value if 0 < value < UNLIMITED else None


def _cpus(quota: str | None, period: str | None) -> float | None:
    try:
        quota_us, period_us = int(quota or ""), int(period or "")
    except ValueError:
        return None  # "max" (v2), unreadable
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None  # v1: -1 = none


def read_cgroup_limits(root: Path = CGROUP_ROOT) -> CgroupLimits:
    """The limits of the cgroup mounted at `root`: v2 (`memory.max`, `cpu.max`) when its files
    are there, else v1 (`memory/memory.limit_in_bytes`, `cpu/cpu.cfs_quota_us` and
    `cpu.cfs_period_us`, or under `cpu,cpuacct/`)."""
    if (root / "cgroup.controllers").exists() or (root / "memory.max").exists():
        memory = _memory(_read(root / "memory.max"))
        quota, _, period = (_read(root / "cpu.max") or "").partition(" ")
        return CgroupLimits(memory, _cpus(quota, period),
                            f"cgroup v2 {root / 'memory.max'}" if memory else
                            "no cgroup memory limit",
                            f"cgroup v2 {root / 'cpu.max'} {quota} {period}"
                            if _cpus(quota, period) else "no cgroup CPU quota",
                            root / "memory.max" if memory else None)
    memory_file = root / "memory" / "memory.limit_in_bytes"
    memory = _memory(_read(memory_file))
    cpu_dir = next((d for d in (root / "cpu", root / "cpu,cpuacct") if d.is_dir()), root / "cpu")
    quota_us = _read(cpu_dir / "cpu.cfs_quota_us")
    period_us = _read(cpu_dir / "cpu.cfs_period_us")
    cpus = _cpus(quota_us, period_us)
    return CgroupLimits(memory, cpus,
                        f"cgroup v1 {memory_file}" if memory else "no cgroup memory limit",
                        f"cgroup v1 {cpu_dir}/cpu.cfs_quota_us {quota_us} / cpu.cfs_period_us "
                        f"{period_us}" if cpus else "no cgroup CPU quota",
                        memory_file if memory else None)


def usable_cpus(limits: CgroupLimits, affinity_cpus: int | None = None) -> int:
    """CPUs this process may keep busy: those it may run on, or the cgroup's CPU quota
    (rounded up) when that is lower; at least 1 (serving's workers, validate-data's pool)."""
    available = len(os.sched_getaffinity(0)) if affinity_cpus is None else affinity_cpus
    return max(1, min(available, math.ceil(limits.cpus)) if limits.cpus else available)
