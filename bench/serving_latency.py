"""Serving overhead and scaling: p50/p99 latency of `POST /invocations` next to the bare pipeline
call (decode, forward, selection, JSON; `serving/pipeline.py`, in this process) on the same
image, then throughput of 1 and 2 gunicorn workers under concurrent load. Not a test: run by
hand, `python bench/serving_latency.py [--requests 100]`.

`--precisions float32,int8 --models vgg-16:300,resnet-50:300,...` instead compares inference
precisions (`SSD_INFERENCE_PRECISION`) per model: bare forward and `/invocations` p50/p99, each
precision's blocks alternating with the others' (one server per precision, 1 worker), then
throughput and peak RSS per worker with the default workers. Goal: INT8 p50 <= 0.5 x float32.

`--batch 16` instead compares, on one server with 1 worker, images/s of one request carrying 16
images (`application/jsonlines`) with 16 single-image requests sent one after the other.

Goals: HTTP p50 <= 1.10 x bare p50; 2 workers >= 1.8 x the throughput of 1 worker when two
cores are free. Both sides use the same OpenMP thread count as the server gives one worker
(cpus // workers), so the latency comparison is like for like. The model is an untrained
VGG-16 SSD300 (same compute as a trained one) unless --model-dir is given.
"""

import argparse
import concurrent.futures
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


class Server:
    """`python -m ssd_sagemaker serve` on loopback with the given environment."""

    def __init__(self, base: Path, workers: int, **env: str):
        from ssd_sagemaker.serving.loopback import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Not this process's OMP_NUM_THREADS: the server sets its own budget unless told.
        environ = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        environ.update(SAGEMAKER_BASE_DIR=str(base), SAGEMAKER_BIND_TO_PORT=str(self.port),
                       SAGEMAKER_MODEL_SERVER_WORKERS=str(workers), **env)
        environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), environ.get("PYTHONPATH")]))
        self.log = open(base / f"serve-{self.port}.log", "w")
        self.process = subprocess.Popen([sys.executable, "-m", "ssd_sagemaker", "serve"],
                                        env=environ, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self):
        from ssd_sagemaker.serving.loopback import NotHealthy, wait_until_healthy

        try:
            wait_until_healthy(self.url, 180, self.process)
        except BaseException as error:  # not entered yet: `with` will not call __exit__
            self.__exit__()
            if isinstance(error, NotHealthy):
                raise SystemExit(f"server did not start: {error}; see {self.log.name}") from None
            raise
        return self

    def peak_rss_mb(self) -> list[float]:
        """Each worker's peak resident memory (VmHWM), MB."""
        pid = self.process.pid
        peaks = []
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        return peaks

    def __exit__(self, *exc):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.log.close()


def post(session, url: str, body: bytes) -> float:
    started = time.perf_counter()
    response = session.post(f"{url}/invocations", data=body,
                            headers={"Content-Type": "image/jpeg"}, timeout=120)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def latency(base: Path, body: bytes, samples: int, rounds: int):
    """Bare predictor and HTTP (1 worker) in alternating blocks, so machine noise hits both."""
    import requests

    from ssd_sagemaker.serving.config import ServingConfig
    from ssd_sagemaker.serving.pipeline import detect_in_bytes
    from ssd_sagemaker.serving.predictor import Predictor

    predictor, config = Predictor(base / "model"), ServingConfig()  # the server's defaults

    def bare_call() -> bytes:
        return detect_in_bytes(predictor, body, config.max_image_pixels, config.limits).render()

    bare, http = [], []
    with Server(base, workers=1) as server, requests.Session() as session:
        for _ in range(3):  # warm-up: graph, memory, connections
            bare_call()
            post(session, server.url, body)
        for _ in range(rounds):
            for _ in range(samples // rounds):
                started = time.perf_counter()
                bare_call()
                bare.append(time.perf_counter() - started)
            for _ in range(samples // rounds):
                http.append(post(session, server.url, body))
    return bare, http


def throughput(base: Path, body: bytes, workers: int, requests_count: int, concurrency: int,
               peaks: list[float] | None = None, **env: str) -> float:
    """Requests per second of `requests_count` POSTs from `concurrency` client threads; the
    workers' peak RSS (MB) appended to `peaks` when given."""
    import requests

    with Server(base, workers=workers, **env) as server:
        sessions = [requests.Session() for _ in range(concurrency)]
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda i: post(sessions[i % concurrency], server.url, body),
                          range(2 * concurrency)))  # warm every worker
            started = time.perf_counter()
            list(pool.map(lambda i: post(sessions[i % concurrency], server.url, body),
                          range(requests_count)))
            seconds = time.perf_counter() - started
        for session in sessions:
            session.close()
        if peaks is not None:
            peaks.extend(server.peak_rss_mb())
    return requests_count / seconds


def batch_against_singles(base: Path, body: bytes, images: int) -> tuple[float, float]:
    """Images/s of `images` single-image requests in a row, then of one batch request holding
    them (1 worker, after a warm-up of each)."""
    import base64
    import json

    import requests

    line = json.dumps({"image": base64.b64encode(body).decode("ascii")}).encode()
    # A long timeout: on shared cores 16 VGG-16 images can outlast the default 48 s deadline.
    with Server(base, workers=1, SAGEMAKER_MODEL_SERVER_TIMEOUT="900") as server, \
            requests.Session() as session:
        def send_batch(count: int) -> None:
            response = session.post(f"{server.url}/invocations", timeout=900,
                                    data=b"\n".join([line] * count),
                                    headers={"Content-Type": "application/jsonlines"})
            response.raise_for_status()
            assert len(response.content.split(b"\n")) == count

        post(session, server.url, body)
        send_batch(2)  # warm-up: the forward of two
        started = time.perf_counter()
        for _ in range(images):
            post(session, server.url, body)
        singles = images / (time.perf_counter() - started)
        started = time.perf_counter()
        send_batch(images)
        batched = images / (time.perf_counter() - started)
    return singles, batched


def export_untrained_model(model_dir: Path, base_network: str = "vgg-16", size: int = 300,
                           int8: bool = False) -> None:
    """An untrained SSD exported as `train` does (same compute as a trained one); with `int8`
    also its INT8 network, as `quantize=int8` adds it (calibrated on synthetic images), with
    the layers a trained network keeps in float32 (the prediction heads: the demo's model kept
    them), since an untrained network's detections cannot choose them."""
    import cv2
    import numpy as np

    from ssd_sagemaker.data.synthetic import write_annotated_channel
    from ssd_sagemaker.data.transforms.presets import validation_transform
    from ssd_sagemaker.model.artifact import SYMBOL_FILE, ModelInfo, save_artifact
    from ssd_sagemaker.model.network import build_network
    from ssd_sagemaker.model.quantization import float32_candidates, write_int8_network

    classes = ("circle", "square", "triangle")
    net = build_network(base_network, size, list(classes))
    net.set_nms(0.45, 400, 100)
    info = ModelInfo(classes, size, base_network, 0.45)
    save_artifact(net, model_dir, info, {})
    if not int8:
        return
    paths = write_annotated_channel(model_dir.parent / "calibration", model_dir.parent / "c_ann",
                                    8, seed=5)
    transform = validation_transform(size)
    images = np.stack([transform(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB),
                                 np.zeros((0, 5), np.float32))[0] for path in paths])
    heads = float32_candidates(model_dir / SYMBOL_FILE)[1]
    write_int8_network(model_dir, images, float32_layers=heads)


def precision_latency(base: Path, body: bytes, samples: int, rounds: int,
                      precisions: list[str]) -> dict[str, dict[str, list[float]]]:
    """Per precision: the bare forward (network only, this process) and `/invocations` (one
    server per precision, 1 worker), in blocks that alternate between precisions."""
    import contextlib

    import mxnet as mx
    import requests

    from ssd_sagemaker.data.transforms.presets import network_input
    from ssd_sagemaker.serving.pipeline import decode_image
    from ssd_sagemaker.serving.predictor import Predictor

    times: dict[str, dict[str, list[float]]] = {p: {"forward": [], "http": []}
                                                for p in precisions}
    predictors = {p: Predictor(base / "model", precision=p) for p in precisions}
    with contextlib.ExitStack() as stack:
        servers = {p: stack.enter_context(Server(base, workers=1, SSD_INFERENCE_PRECISION=p))
                   for p in precisions}
        session = stack.enter_context(requests.Session())
        size = predictors[precisions[0]].info.image_shape
        tensor = network_input(mx.nd.array(decode_image(body), dtype="uint8"), size)

        def forward(precision: str) -> float:
            started = time.perf_counter()
            for output in predictors[precision]._net(tensor):
                output.wait_to_read()
            return time.perf_counter() - started

        for precision in precisions:  # warm-up: graph, memory, connections
            for _ in range(2):
                forward(precision)
                post(session, servers[precision].url, body)
        for _ in range(rounds):
            for precision in precisions:
                for _ in range(max(1, samples // rounds)):
                    times[precision]["forward"].append(forward(precision))
                for _ in range(max(1, samples // rounds)):
                    times[precision]["http"].append(post(session, servers[precision].url, body))
    return times


def compare_precisions(args, body: bytes, cpus: int) -> None:
    """The precision table: one block of lines per model."""
    from ssd_sagemaker.cpu_features import cpu_has_bfloat16, cpu_has_int8_dot_product

    precisions = [p for p in args.precisions.split(",") if p]
    if "bfloat16" in precisions and not cpu_has_bfloat16():
        print("bfloat16 left out: this CPU has no avx512_bf16/amx_bf16 (serve refuses it)")
        precisions.remove("bfloat16")
    print(f"INT8 dot-product instructions (VNNI/AMX): "
          f"{'yes' if cpu_has_int8_dot_product() else 'no (AVX2 only)'}")
    for model in args.models.split(","):
        base_network, size = model.split(":")
        with tempfile.TemporaryDirectory() as folder:
            base = Path(folder)
            subprocess.run([sys.executable, __file__, "--export-to", str(base / "model"),
                            "--export-model", model, "--export-int8"], check=True)
            times = precision_latency(base, body, args.samples, 5, precisions)
            reference = statistics.median(times["float32"]["forward"]) \
                if "float32" in times else None
            for precision in precisions:
                forward, http = times[precision]["forward"], times[precision]["http"]
                peaks: list[float] = []
                rate = throughput(base, body, cpus, args.requests, args.concurrency, peaks,
                                  SSD_INFERENCE_PRECISION=precision)
                ratio = (f"{statistics.median(forward) / reference:.2f} x float32"
                         if reference else "")
                print(f"{base_network} {size} {precision:8s} forward p50 "
                      f"{statistics.median(forward) * 1000:7.0f} ms p99 "
                      f"{percentile(forward, 0.99) * 1000:7.0f} ms ({ratio}) | /invocations p50 "
                      f"{statistics.median(http) * 1000:7.0f} ms p99 "
                      f"{percentile(http, 0.99) * 1000:7.0f} ms | {cpus} workers "
                      f"{rate:5.2f} req/s | peak RSS/worker "
                      f"{max(peaks) if peaks else float('nan'):5.0f} MB", flush=True)


def main() -> None:
    # SIGTERM (`kill`, `pkill`) ends the run through the `with Server(...)` blocks, which stop
    # the servers; Python's default would exit at once and leave them running.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="default: an untrained VGG-16 SSD300")
    parser.add_argument("--samples", type=int, default=60, help="latency samples per side")
    parser.add_argument("--requests", type=int, default=100, help="requests per throughput run")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--precisions", help="compare these SSD_INFERENCE_PRECISION values "
                                                "(e.g. float32,int8,bfloat16) instead")
    parser.add_argument("--models", default="vgg-16:300,resnet-50:300,vgg-16:512,resnet-50:512",
                        help="with --precisions: base_network:image_shape,...")
    parser.add_argument("--batch", type=int, help="compare one request of this many images "
                                                  "with as many single requests instead")
    parser.add_argument("--export-to", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--export-model", default="vgg-16:300", help=argparse.SUPPRESS)
    parser.add_argument("--export-int8", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_to:
        base_network, size = args.export_model.split(":")
        export_untrained_model(args.export_to, base_network, int(size), args.export_int8)
        return

    cpus = len(os.sched_getaffinity(0))
    # Like one server worker: all cores to MXNet's OpenMP, set before MXNet is imported.
    os.environ["OMP_NUM_THREADS"] = str(cpus)
    import cv2

    from ssd_sagemaker.data.synthetic import write_annotated_channel

    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        if args.model_dir:
            (base / "model").symlink_to(args.model_dir.resolve())
        else:  # in a child process, so this one holds only what a worker holds: the predictor
            subprocess.run([sys.executable, __file__, "--export-to", str(base / "model")],
                           check=True)
        write_annotated_channel(base / "images", base / "annotations", 1, seed=0)
        image_path = next((base / "images").iterdir())
        height, width = cv2.imread(str(image_path)).shape[:2]
        body = image_path.read_bytes()
        print(f"{cpus} CPUs, load average {os.getloadavg()[0]:.2f}; image {width}x{height} "
              f"JPEG, {len(body)} bytes")
        if os.getloadavg()[0] > cpus / 2:
            print("warning: other processes are using the CPUs; OpenMP threads slow down badly "
                  "when cores are shared, so these numbers say little about the server")

        if args.batch:
            singles, batched = batch_against_singles(base, body, args.batch)
            print(f"{args.batch} images, 1 worker x {cpus} OpenMP threads: {singles:.3f} images/s "
                  f"as single requests, {batched:.3f} images/s in one application/jsonlines "
                  f"request ({batched / singles:.2f} x)")
            return
        if args.precisions:
            compare_precisions(args, body, cpus)
            return
        bare, http = latency(base, body, args.samples, rounds=5)
        ratio = statistics.median(http) / statistics.median(bare)
        print(f"latency ({len(bare)} samples each, 1 worker x {cpus} OpenMP threads):")
        print(f"  bare pipeline (no HTTP)      p50 {statistics.median(bare) * 1000:7.1f} ms  "
              f"p99 {percentile(bare, 0.99) * 1000:7.1f} ms")
        print(f"  HTTP POST /invocations        p50 {statistics.median(http) * 1000:7.1f} ms  "
              f"p99 {percentile(http, 0.99) * 1000:7.1f} ms")
        print(f"  p50 ratio http/bare: {ratio:.3f} (goal <= 1.10)")

        print(f"throughput ({args.requests} requests, {args.concurrency} concurrent clients):")
        one = throughput(base, body, 1, args.requests, args.concurrency)
        print(f"  1 worker  x {cpus} OpenMP threads (default budget): {one:6.2f} req/s")
        one_thread = throughput(base, body, 1, args.requests, args.concurrency,
                                OMP_NUM_THREADS=str(max(1, cpus // 2)))
        print(f"  1 worker  x {max(1, cpus // 2)} OpenMP threads (as each of 2):  "
              f"{one_thread:6.2f} req/s")
        two = throughput(base, body, 2, args.requests, args.concurrency)
        print(f"  2 workers x {max(1, cpus // 2)} OpenMP threads (default budget): "
              f"{two:6.2f} req/s")
        print(f"  ratio 2 workers / 1 worker, same threads per worker: {two / one_thread:.2f} "
              f"(goal >= 1.8)")
        print(f"  ratio 2 workers / 1 worker, default budgets (same cores): {two / one:.2f}")


if __name__ == "__main__":
    main()
