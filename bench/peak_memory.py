"""Peak memory of `train` and `serve`, each run as the container runs it (a subprocess of the
real CLI on a temporary /opt/ml tree of demo data).

Two numbers per command:
- peak RSS of its largest process: the kernel's `ru_maxrss` from `os.wait4` on the command
  (covers it and the descendants it waited for: loader workers, gunicorn workers);
- peak of the whole process tree, sampled every 0.2 s from /proc: the sum of PSS (shared pages
  split between the processes sharing them, so forked workers are not counted twice) and the
  sum of RSS (shared pages counted in every process: an upper bound).

`serve` answers `--requests` POSTs of a demo JPEG on 127.0.0.1 with its default worker count
(one per CPU) before it is stopped with SIGTERM. Run by hand: `python bench/peak_memory.py
[--train-images 8] [--batch 4] [--image-shape 300] [--requests 20]`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ssd_sagemaker.serving.loopback import free_port, wait_until_healthy


@dataclass
class Peak:
    max_rss_kib: int = 0  # ru_maxrss (KiB on Linux)
    tree_pss_kib: int = 0
    tree_rss_kib: int = 0
    processes: int = 0


def _tree(pid: int) -> list[int]:
    pids, pending = [], [pid]
    while pending:
        current = pending.pop()
        pids.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    pending.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return pids


def _kib(path: str, field: str) -> int:
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeSampler(threading.Thread):
    """Polls the memory of a process and its descendants until stopped."""

    def __init__(self, pid: int, peak: Peak, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.peak, self.interval = pid, peak, interval
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            pids = _tree(self.pid)
            pss = sum(_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
            rss = sum(_kib(f"/proc/{p}/status", "VmRSS:") for p in pids)
            if pss > self.peak.tree_pss_kib:
                self.peak.tree_pss_kib, self.peak.processes = pss, len(pids)
            self.peak.tree_rss_kib = max(self.peak.tree_rss_kib, rss)
            self.done.wait(self.interval)


def run_measured(command: list[str], env: dict, log: Path,
                 during=None) -> tuple[int, Peak]:
    """Run `command`, call `during(process)` while it runs (then SIGTERM it), and return its
    exit status and peaks."""
    peak = Peak()
    with open(log, "w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        sampler = TreeSampler(process.pid, peak)
        sampler.start()
        if during is not None:
            try:
                during(process)
            finally:
                process.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        sampler.done.set()
        sampler.join()
    peak.max_rss_kib = usage.ru_maxrss
    return process.returncode, peak


def _requests(process: subprocess.Popen, port: int, image: bytes, count: int,
              timeout: float = 300) -> list[float]:
    """Wait for /ping, then POST `count` images; the latency of each."""
    wait_until_healthy(f"http://127.0.0.1:{port}", timeout, process)
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=image,
                                         headers={"Content-Type": "image/jpeg"})
        with urllib.request.urlopen(request, timeout=60) as reply:
            assert "prediction" in json.load(reply)
        latencies.append(time.perf_counter() - started)
    return latencies


def _mib(kib: int) -> str:
    return f"{kib / 1024:7.0f} MiB"


def report(name: str, peak: Peak) -> None:
    print(f"{name:<6} largest process (ru_maxrss) {_mib(peak.max_rss_kib)}; whole tree: "
          f"PSS {_mib(peak.tree_pss_kib)} ({peak.processes} processes), "
          f"RSS sum {_mib(peak.tree_rss_kib)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-images", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--image-shape", type=int, default=300)
    parser.add_argument("--base-network", default="vgg-16", choices=("vgg-16", "resnet-50"))
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        env = dict(os.environ, SAGEMAKER_BASE_DIR=str(base), MXNET_HOME=str(base / "mxnet_home"),
                   PYTHONUNBUFFERED="1")
        cli = [sys.executable, "-m", "ssd_sagemaker"]
        subprocess.run(cli + ["demo-data", "--train-images", str(args.train_images),
                              "--validation-images", "2"], env=env, check=True,
                       capture_output=True)
        (base / "input/config/hyperparameters.json").write_text(json.dumps({
            "num_classes": "3", "num_training_samples": str(args.train_images), "epochs": "1",
            "mini_batch_size": str(args.batch), "image_shape": str(args.image_shape),
            "base_network": args.base_network, "use_pretrained_model": "0"}))
        print(f"{args.base_network} SSD{args.image_shape}, train: 1 epoch of "
              f"{args.train_images} images, batch {args.batch} (+ validation, export); serve: "
              f"{args.requests} requests; {len(os.sched_getaffinity(0))} CPUs", flush=True)

        started = time.perf_counter()
        code, train_peak = run_measured(cli + ["train"], env, base / "train.log")
        if code != 0:
            sys.exit(f"train failed ({code}): {(base / 'train.log').read_text()[-2000:]}")
        print(f"train: {time.perf_counter() - started:.0f} s", flush=True)

        image = sorted((base / "input/data/validation").glob("*.jpg"))[0].read_bytes()
        port = free_port()
        latencies: list[float] = []
        code, serve_peak = run_measured(
            cli + ["serve"], dict(env, SAGEMAKER_BIND_TO_PORT=str(port)), base / "serve.log",
            during=lambda served: latencies.extend(_requests(served, port, image,
                                                             args.requests)))
        if code != 0:
            sys.exit(f"serve ended with {code}: {(base / 'serve.log').read_text()[-2000:]}")
        latencies.sort()
        print(f"serve: {len(latencies)} requests, p50 {latencies[len(latencies) // 2] * 1000:.0f}"
              f" ms", flush=True)
    print()
    report("train", train_peak)
    report("serve", serve_peak)


if __name__ == "__main__":
    main()
