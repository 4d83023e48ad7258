"""cgroups.py and capacity.py on fake cgroup trees (v1 and v2, as podman and SageMaker hosts
mount them): the default worker count follows the CPU quota and the memory limit, at least 1,
with its numbers."""

import json

import pytest

from ssd_sagemaker.cgroups import CgroupLimits, read_cgroup_limits
from ssd_sagemaker.serving.capacity import MASTER_MB, serving_capacity, worker_megabytes

MB = 1024 * 1024


def _tree(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return root


def _model(directory, backbone="vgg-16", image_shape=300):
    directory.mkdir(exist_ok=True)
    (directory / "model_info.json").write_text(json.dumps(
        {"classes": ["a"], "image_shape": image_shape, "base_network": backbone}))
    return directory


def test_cgroup_v2_limits(tmp_path):
    root = _tree(tmp_path, {"cgroup.controllers": "cpu memory", "memory.max": str(734 * MB),
                            "cpu.max": "150000 100000"})
    limits = read_cgroup_limits(root)
    assert (limits.memory_bytes, limits.cpus) == (734 * MB, 1.5)
    assert limits.memory_source == f"cgroup v2 {root / 'memory.max'}"
    assert limits.cpu_source == f"cgroup v2 {root / 'cpu.max'} 150000 100000"


def test_cgroup_v2_without_limits(tmp_path):
    root = _tree(tmp_path, {"cgroup.controllers": "cpu", "memory.max": "max",
                            "cpu.max": "max 100000"})
    assert read_cgroup_limits(root) == CgroupLimits()


def test_cgroup_v1_limits_as_podman_sets_them(tmp_path):
    root = _tree(tmp_path, {"memory/memory.limit_in_bytes": str(700 * MB),
                            "cpu/cpu.cfs_quota_us": "200000", "cpu/cpu.cfs_period_us": "100000"})
    limits = read_cgroup_limits(root)
    assert (limits.memory_bytes, limits.cpus) == (700 * MB, 2.0)
    assert "cpu.cfs_quota_us 200000 / cpu.cfs_period_us 100000" in limits.cpu_source


def test_cgroup_v1_unlimited_and_combined_cpu_controller(tmp_path):
    root = _tree(tmp_path, {"memory/memory.limit_in_bytes": "9223372036854771712",
                            "cpu,cpuacct/cpu.cfs_quota_us": "-1",
                            "cpu,cpuacct/cpu.cfs_period_us": "100000"})
    assert read_cgroup_limits(root) == CgroupLimits()
    _tree(root, {"cpu,cpuacct/cpu.cfs_quota_us": "50000"})
    assert read_cgroup_limits(root).cpus == 0.5


def test_no_cgroup_files_and_garbage_mean_no_limits(tmp_path):
    assert read_cgroup_limits(tmp_path / "absent") == CgroupLimits()
    root = _tree(tmp_path / "odd", {"memory.max": "lots", "cpu.max": "x y"})
    assert read_cgroup_limits(root) == CgroupLimits()


def test_the_issue_s_700m_2_cpus_container_gets_one_worker(tmp_path):
    """`--memory 700m --cpus 2`, VGG-16 300 px: 2 workers were OOM-killed under a burst."""
    root = _tree(tmp_path / "cg", {"memory/memory.limit_in_bytes": str(700 * MB),
                                   "cpu/cpu.cfs_quota_us": "200000",
                                   "cpu/cpu.cfs_period_us": "100000"})
    capacity = serving_capacity(_model(tmp_path / "model"), 40_000_000, gpus=0, root=root,
                                affinity_cpus=8)
    assert (capacity.cpus, capacity.by_cpu, capacity.by_memory, capacity.workers) == (2, 2, 0, 1)
    text = capacity.describe()
    assert text.startswith("1 workers by default = the fewest of 2 for the 2 CPUs (cgroup v1 ")
    assert f"0 that fit in 700 MB (cgroup v1 {root}/memory/memory.limit_in_bytes) less " \
           f"{MASTER_MB} MB for the master" in text and "vgg-16 300 px" in text


def test_memory_and_pixel_limit_set_the_count(tmp_path):
    model = _model(tmp_path / "model")
    root = _tree(tmp_path / "cg", {"cgroup.controllers": "", "memory.max": str(6144 * MB),
                                   "cpu.max": "max 100000"})
    per_worker = worker_megabytes("vgg-16", 300, 40_000_000)
    capacity = serving_capacity(model, 40_000_000, gpus=0, root=root, affinity_cpus=16)
    assert capacity.by_memory == int((6144 - MASTER_MB) // per_worker) == capacity.workers < 16
    smaller = serving_capacity(model, 4_000_000, gpus=0, root=root, affinity_cpus=16)
    assert smaller.workers > capacity.workers  # a lower SSD_MAX_IMAGE_PIXELS makes room
    few_cpus = serving_capacity(model, 4_000_000, gpus=0, root=root, affinity_cpus=3)
    assert few_cpus.workers == 3


def test_worker_memory_grows_with_the_input_area():
    assert worker_megabytes("vgg-16", 512, 0) > worker_megabytes("vgg-16", 300, 0)
    assert worker_megabytes("vgg-16", 1024, 0) > worker_megabytes("vgg-16", 512, 0) * 2
    assert worker_megabytes("resnet-50", 300, 0) < worker_megabytes("vgg-16", 300, 0)
    assert worker_megabytes("vgg-16", 300, 10 * MB) == pytest.approx(
        worker_megabytes("vgg-16", 300, 0) + 30)


def test_gpus_set_the_cpu_bound_and_an_unreadable_model_sizes_as_the_largest(tmp_path):
    root = _tree(tmp_path / "cg", {"cgroup.controllers": "", "memory.max": str(64 * 1024 * MB)})
    capacity = serving_capacity(tmp_path / "no-model", 1_000_000, gpus=4, root=root,
                                affinity_cpus=32)
    assert capacity.workers == 4 and capacity.model == "unknown 512 px"
