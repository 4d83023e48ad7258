"""`serve` as a real process under cgroup limits: its own mount namespace (`unshare -m`) with a
fake cgroup tree bound over /sys/fs/cgroup, as a container's limits appear inside it. The
default worker count follows the CPU quota and the memory limit, and is logged with its numbers.
(The podman test of tests/container/ checks the same under a real `--memory`/`--cpus`.)"""

import os
import shutil
import subprocess
import sys

import pytest

from cli_runner import cli_env
from serve_process import BOOT_SECONDS
from ssd_sagemaker.serving.capacity import MASTER_MB, worker_megabytes
from ssd_sagemaker.serving.loopback import NotHealthy, free_port, wait_until_healthy

pytestmark = [pytest.mark.slow,  # starts a real serve
              pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                 reason="a mount namespace needs root and unshare")]
MB = 1024 * 1024
PIXELS = 1_000_000


def _serve_under(base, cgroup_root, **env):
    """`serve` in its own mount namespace seeing `cgroup_root` as /sys/fs/cgroup; its output
    once /ping answers, and its worker count."""
    port = free_port()
    log = base / f"serve-{port}.log"
    command = (f"mount --bind {cgroup_root} /sys/fs/cgroup && exec {sys.executable} -m "
               f"ssd_sagemaker serve")
    with log.open("w") as out:
        process = subprocess.Popen(["unshare", "-m", "sh", "-c", command], stdout=out,
                                   stderr=subprocess.STDOUT,
                                   env=cli_env(base, SAGEMAKER_BIND_TO_PORT=str(port),
                                               SSD_MAX_IMAGE_PIXELS=str(PIXELS), **env))
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", BOOT_SECONDS, process)
        children = open(f"/proc/{process.pid}/task/{process.pid}/children").read().split()
    except NotHealthy as error:
        raise AssertionError(f"{error}:\n{log.read_text()[-3000:]}") from None
    finally:
        process.terminate()
        process.wait(timeout=60)
    return log.read_text(), len(children)


def _tree(root, files):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _memory_for_one_worker(root):
    """A cgroup v2 tree with no CPU quota and memory for 1.5 workers; the limit in bytes."""
    limit = int((MASTER_MB + 1.5 * worker_megabytes("vgg-16", 64, PIXELS)) * MB)
    _tree(root, {"cgroup.controllers": "cpu memory", "memory.max": str(limit),
                 "cpu.max": "max 100000"})
    return limit


def test_memory_limit_caps_the_workers(tiny_opt_ml, tmp_path):
    """2 CPUs here, memory for 1 worker (cgroup v2): 1 worker, where 2 used to start."""
    root = tmp_path / "cgroup"
    limit = _memory_for_one_worker(root)
    output, workers = _serve_under(tiny_opt_ml, root)
    assert workers == 1, output[-3000:]
    assert (f"1 workers by default = the fewest of 2 for the 2 CPUs (no cgroup CPU quota) and 1 "
            f"that fit in {limit / MB:.0f} MB (cgroup v2 /sys/fs/cgroup/memory.max)") in output


def test_cpu_quota_caps_the_workers(tiny_opt_ml, tmp_path):
    """cgroup v1 as podman's `--cpus 1` writes it, memory unlimited: 1 worker."""
    root = _tree(tmp_path / "cgroup", {"memory/memory.limit_in_bytes": "9223372036854771712",
                                       "cpu/cpu.cfs_quota_us": "100000",
                                       "cpu/cpu.cfs_period_us": "100000"})
    output, workers = _serve_under(tiny_opt_ml, root)
    assert workers == 1, output[-3000:]
    assert ("1 workers by default = the fewest of 1 for the 1 CPUs (cgroup v1 "
            "/sys/fs/cgroup/cpu/cpu.cfs_quota_us 100000 / cpu.cfs_period_us 100000)") in output


def test_more_workers_than_fit_are_obeyed_with_a_warning(tiny_opt_ml, tmp_path):
    root = tmp_path / "cgroup"
    _memory_for_one_worker(root)
    output, workers = _serve_under(tiny_opt_ml, root, SAGEMAKER_MODEL_SERVER_WORKERS="2")
    assert workers == 2, output[-3000:]
    assert ("SAGEMAKER_MODEL_SERVER_WORKERS=2: more workers than the 1 that fit in" in output
            and "a burst of requests may get one killed for memory" in output), output[-3000:]
