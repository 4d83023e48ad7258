"""Memory of `serve` per backbone and input size: the numbers behind the default worker count
(`serving/capacity.py`: MASTER_MB, WORKER_MB) and the serverless recipe
(docs/serverless-and-async.md). Not a test: run by hand,
`python bench/serving_memory.py [vgg-16:300 vgg-16:512 resnet-50:300 resnet-50:512]`.

For each model (untrained, exported as `train` does: the same weights and activations as a
trained one) `serve` runs with one worker and 2 OpenMP threads, answers one 640x480 JPEG and one
`application/jsonlines` batch of two; then the master's resident memory and the worker's private
memory (`/proc/PID/smaps_rollup`: the pages it shares with the master since the fork are counted
once by the cgroup, so the container needs master + workers x private) are printed as JSON.
"""

import base64
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

from serve_process import Server  # noqa: E402
from serving_samples import CLASSES, encode, noise  # noqa: E402
from ssd_sagemaker.model.artifact import ModelInfo, save_artifact  # noqa: E402
from ssd_sagemaker.model.network import build_network  # noqa: E402


def megabytes(pid: int) -> dict[str, int]:
    """Resident and private memory of a process (MB), and its peak resident (VmHWM)."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, *value = line.split()
        fields[key.rstrip(":")] = int(value[0]) // 1024 if value else 0
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    peak = next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmHWM"))
    return {"rss": fields["Rss"], "private": fields["Private_Clean"] + fields["Private_Dirty"],
            "peak_rss": peak}


def measure(backbone: str, size: int) -> dict:
    base = Path(tempfile.mkdtemp())
    net = build_network(backbone, size, list(CLASSES))
    net.set_nms(0.45, 400, 100)
    save_artifact(net, base / "model", ModelInfo(CLASSES, size, backbone, 0.45),
                  {"num_classes": len(CLASSES)})
    server = Server(base, SAGEMAKER_MODEL_SERVER_WORKERS="1", OMP_NUM_THREADS="2").wait_ready()
    try:
        worker = next(iter(server.workers()))
        booted = megabytes(worker)
        image = encode(noise(640, 480))
        assert server.post(image).status_code == 200
        line = json.dumps({"image": base64.b64encode(image).decode()})
        assert server.post(f"{line}\n{line}".encode(),
                           content_type="application/jsonlines").status_code == 200
        return {"model": f"{backbone}:{size}", "master": megabytes(server.process.pid),
                "worker_loaded": booted, "worker_after_requests": megabytes(worker)}
    finally:
        server.stop()


if __name__ == "__main__":
    for model in sys.argv[1:] or ["vgg-16:300", "vgg-16:512", "resnet-50:300", "resnet-50:512"]:
        name, size = model.split(":")
        print(json.dumps(measure(name, int(size))), flush=True)
