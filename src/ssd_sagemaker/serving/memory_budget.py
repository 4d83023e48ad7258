"""Whether one more model fits in memory, asked before a multi-model server loads it: a model
that does not fit is refused with 507, SageMaker's signal to unload the least recently used
model and retry, instead of a worker killed by the kernel's OOM killer mid-request.

The limit is the container's cgroup limit (v2 `memory.max`, v1 `memory.limit_in_bytes`), or the
machine's memory when there is none; usage is the cgroup's (less the page cache the kernel can
drop), or the machine's. `SSD_MME_MEMORY_LIMIT_MB` caps what this server's own processes may
hold (their resident memory), below that: to keep room for something else, and in tests.

What a model needs is estimated from its parameters file: every worker loads its own copy, and
each copy holds the weights plus MXNet's buffers (`MODEL_MEMORY_FACTOR`, measured).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ssd_sagemaker.cgroups import read_cgroup_limits
from ssd_sagemaker.serving.request_errors import RequestError
from ssd_sagemaker.variables import SSD_MME_MEMORY_LIMIT_MB

LOG = logging.getLogger(__name__)

MEGABYTE = 1024 * 1024
CGROUP = Path("/sys/fs/cgroup")
# The usage file beside each version's limit file, and the memory.stat key of reclaimable
# page cache (v2, v1).
USAGE_FILES = {"memory.max": ("memory.current", "inactive_file"),
               "memory.limit_in_bytes": ("memory.usage_in_bytes", "total_inactive_file")}
# Resident memory of one worker's copy of a model, per byte of its parameters file: measured
# with the exported VGG-16 SSD300 (params 93 MB: +220 MB RSS after loading and one forward,
# 2.4x; 92 MB of it returned when the copy is dropped), with room to spare.
MODEL_MEMORY_FACTOR = 3.0
# A model's own allocations besides its weights (graph, oneDNN primitives), per copy.
MODEL_MEMORY_OVERHEAD = 16 * MEGABYTE


class InsufficientMemory(RequestError):
    """A model that would not fit in memory (507: SageMaker unloads a model and retries)."""

    status = 507


@dataclass(frozen=True)
class MemoryState:
    """A limit and what is used of it, in bytes, and where they were read."""

    limit: int
    used: int
    source: str


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # v2 writes "max" for no limit


def _stat_value(path: Path, key: str) -> int:
    try:
        for line in path.read_text(encoding="ascii").splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def machine_memory(meminfo: Path = Path("/proc/meminfo")) -> MemoryState:
    """The machine's memory and what is not available of it."""
    fields = {}
    for line in meminfo.read_text(encoding="ascii").splitlines():
        name, _, value = line.partition(":")
        fields[name] = int(value.split()[0]) * 1024
    total = fields["MemTotal"]
    return MemoryState(total, total - fields.get("MemAvailable", fields.get("MemFree", 0)),
                       "the machine's memory")


def container_memory(root: Path = CGROUP, meminfo: Path = Path("/proc/meminfo")) -> MemoryState:
    """The cgroup's limit (read as the worker count reads it, `capacity.read_cgroup_limits`)
    and usage less reclaimable page cache, or the machine's memory when no limit is set below
    it."""
    machine = machine_memory(meminfo)
    limits = read_cgroup_limits(root)
    limit_file = limits.memory_file
    if limits.memory_bytes is None or limit_file is None or limits.memory_bytes >= machine.limit:
        return machine
    usage_file, cache_key = USAGE_FILES[limit_file.name]
    used = _read_int(limit_file.with_name(usage_file))
    if used is None:
        return machine
    used = max(0, used - _stat_value(limit_file.with_name("memory.stat"), cache_key))
    return MemoryState(limits.memory_bytes, used, f"the container's limit ({limit_file})")


def _resident_bytes(pid: int) -> int:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text(encoding="ascii").split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def server_resident_bytes(master: int) -> int:
    """Resident memory of the server's processes: the master and its children (the workers)."""
    children: list[int] = []
    for task in Path(f"/proc/{master}/task").glob("*"):
        try:
            children += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            continue
    return sum(_resident_bytes(pid) for pid in [master, *children])


def model_bytes(params_file: Path) -> int:
    """The estimated resident memory of one copy of the model whose parameters are in
    `params_file`."""
    return int(params_file.stat().st_size * MODEL_MEMORY_FACTOR) + MODEL_MEMORY_OVERHEAD


def check_fits(name: str, params_file: Path, copies: int, server_limit_mb: int | None,
               promised: int = 0, master: int | None = None) -> None:
    """InsufficientMemory unless `copies` copies of the model fit both in the container's
    memory and under `server_limit_mb` (`SSD_MME_MEMORY_LIMIT_MB`) for this server's processes
    (the master is this process's parent, a worker's, unless given), besides the `promised`
    bytes of copies of loaded models that workers have not loaded yet."""
    need = model_bytes(params_file) * copies + promised
    states = [container_memory()]
    if server_limit_mb is not None:
        used = server_resident_bytes(os.getppid() if master is None else master)
        states.append(MemoryState(server_limit_mb * MEGABYTE, used,
                                  f"this server's limit ({SSD_MME_MEMORY_LIMIT_MB}="
                                  f"{server_limit_mb})"))
    for state in states:
        if state.used + need > state.limit:
            raise InsufficientMemory(
                f"model '{name}' does not fit in memory: it needs about {need // MEGABYTE} MB "
                f"({copies} worker copies of {model_bytes(params_file) // MEGABYTE} MB, and "
                f"{promised // MEGABYTE} MB promised to other models' copies), and "
                f"{state.used // MEGABYTE} MB of {state.limit // MEGABYTE} MB are in use "
                f"({state.source}); unload a model (DELETE /models/NAME) and retry")
    LOG.info("model '%s' fits: about %d MB for %d copies", name, need // MEGABYTE, copies)
