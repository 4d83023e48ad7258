"""Two hosts on this machine, each with its own /opt/ml tree and resourceconfig.json, training
as one parameter-server job with real scheduler, server and worker processes.

Hosts are network namespaces when this machine allows it (`ip netns`, a veth pair, each host
its own address and /etc/netns/<name>/hosts), otherwise processes on loopback with the
documented test-only override SSD_HOST_ADDRESSES."""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import cli_env, free_port, run_cli, write_hyperparameters

pytestmark = pytest.mark.slow

HOSTS = ("algo-1", "algo-2")
BASE = {"num_classes": "3", "num_training_samples": "8", "epochs": "1", "mini_batch_size": "2",
        "use_pretrained_model": "0", "image_shape": "300"}


def _host_tree(base, host, **hyperparameters):
    made = run_cli(base, "demo-data", "--train-images", "8", "--validation-images", "2")
    assert made.returncode == 0, made.stderr
    write_hyperparameters(base, dict(BASE, **hyperparameters))
    (base / "input/config/resourceconfig.json").write_text(json.dumps(
        {"current_host": host, "hosts": list(HOSTS), "network_interface_name": "eth0"}))


def _start_hosts(tmp_path, network, **hyperparameters):
    port = free_port()
    processes = {}
    for host in HOSTS:
        base = tmp_path / host
        _host_tree(base, host, **hyperparameters)
        env = cli_env(base, SSD_SCHEDULER_PORT=str(port), SSD_HOST_RESOLVE_TIMEOUT="60",
                      **network.environment())
        processes[host] = subprocess.Popen(
            network.command(host, [sys.executable, "-m", "ssd_sagemaker", "train"]), env=env,
            stdout=open(base / "train.log", "w"), stderr=subprocess.STDOUT,
            start_new_session=True)
    return processes


def _wait(processes, timeout=600):
    deadline = time.time() + timeout
    codes = {}
    try:
        for host, process in processes.items():
            codes[host] = process.wait(timeout=max(1, deadline - time.time()))
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, 9)
    return codes


def _log(tmp_path, host):
    return (tmp_path / host / "train.log").read_text()


class Loopback:
    """Both hosts on 127.0.0.1 with the host→address override."""

    def environment(self):
        return {"SSD_HOST_ADDRESSES": ",".join(f"{h}=127.0.0.1" for h in HOSTS)}

    def command(self, host, argv):
        return argv


@pytest.fixture
def network():
    return Loopback()


def _processes_of(tmp_path):
    """Processes (any role) still running with this test's trees in their environment."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if str(tmp_path).encode() in handle.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _wait_no_processes(tmp_path, timeout=30):
    deadline = time.time() + timeout
    while _processes_of(tmp_path) and time.time() < deadline:
        time.sleep(0.5)
    return _processes_of(tmp_path)


def test_dist_sync_two_hosts_one_artifact(tmp_path, network):
    processes = _start_hosts(tmp_path, network, kv_store="dist_sync")
    codes = _wait(processes)
    assert codes == {"algo-1": 0, "algo-2": 0}, _log(tmp_path, "algo-1") + _log(tmp_path, "algo-2")
    first, second = tmp_path / "algo-1", tmp_path / "algo-2"
    assert (first / "model/model_algo_1-0000.params").is_file()
    assert not (second / "model").exists() or not any((second / "model").iterdir())
    assert (first / "output/success").exists() and (second / "output/success").exists()
    assert (first / "output/data/metrics.jsonl").exists()
    assert not (second / "output/data").exists()
    log_one, log_two = _log(tmp_path, "algo-1"), _log(tmp_path, "algo-2")
    assert "is a dist_sync worker" in log_one and "is a dist_sync worker" in log_two
    assert "validation mAP" in log_one and "validation mAP" not in log_two
    assert _wait_no_processes(tmp_path) == []
