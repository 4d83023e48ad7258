"""How many workers the container has room for: its CPUs and memory, read from its cgroup (v1 or
v2: `os.sched_getaffinity` and `os.cpu_count` see neither limit), and the measured memory of one
worker for the model's backbone and input size.

One worker per CPU used to be the default whatever the memory: under `--memory 700m --cpus 2`
(VGG-16, 300 px) `serve` started 2 workers in 695 of 734 MB and a burst of 16 requests got a
worker OOM-killed and a client a closed connection. Nothing here imports MXNet (the master sizes
the server before MXNet's first import).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ssd_sagemaker.cgroups import CGROUP_ROOT, CgroupLimits, read_cgroup_limits, usable_cpus

LOG = logging.getLogger(__name__)

MEGABYTE = 1024 * 1024
# Measured by bench/serving_memory.py (untrained exported models, 2 classes): `serve` with one
# worker after a 640x480 image and a batch of two, the master's resident memory and the worker's
# private memory (pages it shares with the master since the fork count once in the cgroup). A
# worker's memory grows with the input's area (activations): MB = fixed + k * size^2, fitted to
# each backbone's 300 and 512 px measurements.
MASTER_MB = 210
WORKER_MB: dict[str, tuple[float, float]] = {  # backbone -> (MB at 300 px, MB at 512 px)
    "vgg-16": (470, 837),
    "resnet-50": (455, 617),
}
# One decoded image of the largest allowed size is held while a request is decoded: 3 bytes a
# pixel (RGB), on top of the measured worker.
BYTES_PER_PIXEL = 3


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def worker_megabytes(backbone: str, image_shape: int, max_image_pixels: int) -> float:
    """One worker's memory: the measured network at `image_shape` (an unknown backbone: the
    largest measured) plus one decoded image of `max_image_pixels`."""
    at_300, at_512 = WORKER_MB.get(backbone, max(WORKER_MB.values()))
    per_pixel = (at_512 - at_300) / (512 ** 2 - 300 ** 2)
    network = at_300 + per_pixel * (image_shape ** 2 - 300 ** 2)
    return network + max_image_pixels * BYTES_PER_PIXEL / MEGABYTE


def model_shape(model_dir: Path) -> tuple[str, int]:
    """(backbone, image_shape) from the artifact's `model_info.json` (read as JSON: the
    artifact module imports MXNet); an unreadable one is the preflight's to refuse, so it
    sizes as the largest measured model here."""
    try:
        info = json.loads((model_dir / "model_info.json").read_text(encoding="utf-8"))
        return str(info["base_network"]), int(info["image_shape"])
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown", 512


@dataclass(frozen=True)
class Capacity:
    """The default worker count and the numbers it comes from (`describe` logs them)."""

    cpus: int
    workers: int
    by_cpu: int
    by_memory: int
    limits: CgroupLimits
    memory_mb: float
    worker_mb: float
    model: str

    def describe(self) -> str:
        source = self.limits.memory_source if self.limits.memory_bytes else (
            "the physical memory: no cgroup memory limit")
        memory = (f"{self.by_memory} that fit in {self.memory_mb:.0f} MB ({source}) less "
                  f"{MASTER_MB} MB for the master, at {self.worker_mb:.0f} MB per worker "
                  f"({self.model} and one image of the pixel limit)")
        return (f"{self.workers} workers by default = the fewest of {self.by_cpu} for the "
                f"{self.cpus} CPUs ({self.limits.cpu_source}) and {memory}; at least 1")


def serving_capacity(model_dir: Path, max_image_pixels: int, gpus: int,
                     root: Path = CGROUP_ROOT, affinity_cpus: int | None = None) -> Capacity:
    """The default worker count: one per GPU, else one per CPU (the CPU quota when below the
    CPUs this process may use), no more than fit in the memory limit, and at least 1."""
    limits = read_cgroup_limits(root)
    cpus = usable_cpus(limits, affinity_cpus)
    by_cpu = gpus or cpus
    backbone, image_shape = model_shape(model_dir)
    per_worker = worker_megabytes(backbone, image_shape, max_image_pixels)
    memory_mb = (limits.memory_bytes or physical_memory()) / MEGABYTE
    by_memory = max(0, int((memory_mb - MASTER_MB) // per_worker))
    workers = max(1, min(by_cpu, by_memory))
    return Capacity(cpus, workers, by_cpu, by_memory, limits, memory_mb, per_worker,
                    f"{backbone} {image_shape} px")
