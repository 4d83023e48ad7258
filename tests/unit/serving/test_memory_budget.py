"""memory_budget.py: the cgroup v2 and v1 limits and usage (page cache left out), the machine's
memory without a cgroup limit, the server's own cap, and the 507 that names the numbers."""

import os

import pytest

from ssd_sagemaker.serving.memory_budget import (
    MEGABYTE,
    InsufficientMemory,
    check_fits,
    container_memory,
    model_bytes,
    server_resident_bytes,
)

GIB = 1024 * MEGABYTE


@pytest.fixture
def meminfo(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal:       {16 * GIB // 1024} kB\nMemFree:     1000 kB\n"
                    f"MemAvailable:   {12 * GIB // 1024} kB\n")
    return path


def test_cgroup_v2_limit_and_usage_without_the_page_cache(tmp_path, meminfo):
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "memory.max").write_text(f"{2 * GIB}\n")
    (root / "memory.current").write_text(f"{GIB}\n")
    (root / "memory.stat").write_text(f"anon 1\ninactive_file {256 * MEGABYTE}\n")
    state = container_memory(root, meminfo)
    assert (state.limit, state.used) == (2 * GIB, GIB - 256 * MEGABYTE)
    assert "memory.max" in state.source


def test_cgroup_v1_files(tmp_path, meminfo):
    v1 = tmp_path / "cgroup" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(f"{GIB}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{600 * MEGABYTE}\n")
    (v1 / "memory.stat").write_text(f"cache 5\ntotal_inactive_file {100 * MEGABYTE}\n")
    state = container_memory(tmp_path / "cgroup", meminfo)
    assert (state.limit, state.used) == (GIB, 500 * MEGABYTE)


def test_no_cgroup_limit_is_the_machine_memory(tmp_path, meminfo):
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "memory.max").write_text("max\n")
    (root / "memory.current").write_text(f"{GIB}\n")
    state = container_memory(root, meminfo)
    assert (state.limit, state.used) == (16 * GIB, 4 * GIB)
    assert state.source == "the machine's memory"


def test_the_server_cap_refuses_with_507_naming_the_numbers(tmp_path):
    params = tmp_path / "model.params"
    params.write_bytes(b"\0" * (10 * MEGABYTE))
    assert model_bytes(params) == 46 * MEGABYTE  # 3 x 10 MB + 16 MB
    used = server_resident_bytes(os.getpid())
    assert used > 10 * MEGABYTE  # this Python, with MXNet imported by other tests or not
    with pytest.raises(InsufficientMemory) as refused:
        check_fits("site-a", params, 2, server_limit_mb=used // MEGABYTE + 50,
                   master=os.getpid())
    assert refused.value.status == 507
    assert "model 'site-a' does not fit in memory: it needs about 92 MB (2 worker copies of " \
           "46 MB, and 0 MB promised to other models' copies)" in str(refused.value)
    assert "SSD_MME_MEMORY_LIMIT_MB" in str(refused.value)
    check_fits("site-a", params, 1, server_limit_mb=used // MEGABYTE + 100, master=os.getpid())
    with pytest.raises(InsufficientMemory, match="and 60 MB promised"):
        check_fits("site-a", params, 1, server_limit_mb=used // MEGABYTE + 100,
                   promised=60 * MEGABYTE, master=os.getpid())
