"""The image end to end with podman, as SageMaker and a user meet it.

Builds the CPU image from the Dockerfile on a Debian bookworm base (python3 = 3.11) with
PRETRAINED_WEIGHTS=0 (this machine reaches only package registries, not GluonCV's model store),
then: trains through docker/local/train_local.sh (`IMAGE demo-data`, `IMAGE train`), serves
through serve_local.sh (`IMAGE serve`), asks for predictions with predict.sh, urllib and the
SageMaker Python SDK's local-mode Predictor, checks the failure file for bad hyperparameters and
that SIGTERM stops training and serving promptly. HTTP goes to 127.0.0.1 only.

tests/container/prepare.sh installs podman/runc/debootstrap and makes the base image (cached).
Skipped, with the reason, only where podman cannot run (not root, no apt-get, no containers),
or when SSD_SAGEMAKER_SKIP_CONTAINER=1.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from podman_support import IMAGE, LOCAL, RUN_FLAGS, http, podman, tail

from ssd_sagemaker.metrics import METRIC_DEFINITIONS
from ssd_sagemaker.serving.loopback import NotHealthy, free_port, wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]
VENV_OWN = ("ssd-sagemaker", "pip", "setuptools")  # the project and what `python -m venv` brings

pytestmark = pytest.mark.slow

TINY_HYPERPARAMETERS = {"num_classes": "3", "num_training_samples": "4", "epochs": "1",
                        "mini_batch_size": "2", "image_shape": "300",
                        "use_pretrained_model": "0"}
MODEL_FILES = ("model_algo_1-symbol.json", "model_algo_1-0000.params", "hyperparams.json",
               "model_info.json")


def script_env(tree: Path, **extra: str) -> dict:
    """The environment for the docker/local scripts: podman, our image, our tree."""
    return dict(os.environ, ENGINE="podman", IMAGE=IMAGE, OPT_ML=str(tree), **extra)


def make_tree(path: Path, hyperparameters: dict, data_from: Path | None = None) -> Path:
    """An /opt/ml tree with the example config files, these hyperparameters and, optionally,
    the input data of another tree."""
    config = path / "input" / "config"
    config.mkdir(parents=True)
    for name in ("inputdataconfig.json", "resourceconfig.json"):
        shutil.copy(LOCAL / "opt_ml" / "input" / "config" / name, config / name)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    if data_from is not None:
        shutil.copytree(data_from / "input" / "data", path / "input" / "data")
    return path


# --------------------------------------------------------------------------------------------
# fixtures: a trained tree, a running server (the engine, the image and the SDK's venv:
# conftest.py)


@pytest.fixture(scope="module")
def trained(image, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A tiny training run (4 + 2 demo images, 1 epoch) through docker/local/train_local.sh."""
    tree = make_tree(tmp_path_factory.mktemp("opt_ml"), TINY_HYPERPARAMETERS)
    started = time.monotonic()
    result = subprocess.run(["bash", str(LOCAL / "train_local.sh")],
                            env=script_env(tree, TRAIN_IMAGES="4", VALIDATION_IMAGES="2"),
                            capture_output=True, text=True, timeout=900)
    print(f"\ntrain_local.sh (demo-data + train) took {time.monotonic() - started:.0f} s")
    return tree, result


@pytest.fixture(scope="module")
def server(trained):
    """serve_local.sh in the background on a free port; yields (url, process, container)."""
    tree, result = trained
    assert result.returncode == 0, f"training failed:\n{tail(result.stdout + result.stderr)}"
    port = free_port()
    name = f"ssd-sagemaker-test-{uuid.uuid4().hex[:8]}"
    log = (tree.parent / f"{name}.log").open("w+")
    process = subprocess.Popen(["bash", str(LOCAL / "serve_local.sh")],
                               env=script_env(tree, PORT=str(port), NAME=name),
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_healthy(url, 180, process, interval=0.5)
        except NotHealthy as error:
            log.seek(0)
            raise AssertionError(f"serve_local.sh: {error}:\n{tail(log.read())}") from None
        yield url, process, name
    finally:
        podman("rm", "-f", "-t", "0", name, timeout=60)
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        log.close()


def first_validation_image(tree: Path) -> Path:
    return sorted((tree / "input" / "data" / "validation").glob("*.jpg"))[0]


def direct_prediction(url: str, tree: Path) -> dict:
    status, body = http(f"{url}/invocations", first_validation_image(tree).read_bytes(),
                        "image/jpeg")
    assert status == 200, body[:500]
    return json.loads(body)


# --------------------------------------------------------------------------------------------
# the image


def test_image_metadata(image):
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["Labels"]["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
    assert config["Entrypoint"] == ["/opt/venv/bin/dumb-init", "--single-child", "--",
                                    "/usr/local/bin/entrypoint"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["MXNET_HOME"] == "/opt/mxnet"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert "8080/tcp" in config["ExposedPorts"]
    size = inspected["Size"]
    print(f"\nimage size {size / 1e6:.0f} MB")
    assert size < 1_200_000_000, f"the CPU image grew to {size / 1e6:.0f} MB"


def test_image_has_headless_opencv_mxnet_gluoncv_and_no_build_tools(image):
    probe = textwrap.dedent("""
        import importlib.metadata as md, json, os, shutil, sys
        import cv2, mxnet, gluoncv
        def installed(name):
            try:
                return md.version(name)
            except md.PackageNotFoundError:
                return None
        print(json.dumps({
            "python": list(sys.version_info[:2]), "cv2": cv2.__file__, "mxnet": mxnet.__version__,
            "opencv-python": installed("opencv-python"),
            "opencv-python-headless": installed("opencv-python-headless"),
            "ssd-sagemaker": installed("ssd-sagemaker"),
            "tools": [tool for tool in ("gcc", "cc", "g++", "make") if shutil.which(tool)],
            "model_cache": os.path.isdir("/opt/mxnet/models"),
            "mx_cpu_sum": float(mxnet.nd.ones((2, 3)).sum().asscalar()),
            "versions": {dist.metadata["Name"]: dist.version for dist in md.distributions()},
        }))
    """)
    result = podman("run", "--rm", *RUN_FLAGS, image, "python", "-c", probe)
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["python"] == [3, 11]
    assert facts["cv2"].startswith("/opt/venv/"), facts
    assert facts["opencv-python"] is None and facts["opencv-python-headless"], facts
    assert facts["mxnet"] == "1.9.1" and facts["mx_cpu_sum"] == 6.0
    assert facts["ssd-sagemaker"], facts
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    installed = {canonicalize_name(name): version for name, version in facts["versions"].items()}
    unlocked = {name: version for name, version in installed.items()
                if pins.get(name) != version and name not in VENV_OWN}
    assert not unlocked, f"installed in the image but not at the lock's version: {unlocked}"
    assert installed["gunicorn"] == pins["gunicorn"] and installed["flask"] == pins["flask"]
    assert facts["tools"] == [], f"build tools left in the image: {facts['tools']}"
    assert facts["model_cache"]


def test_entrypoint_passes_options_to_the_cli(image):
    result = podman("run", "--rm", *RUN_FLAGS, image, "--help")
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "serve" in result.stdout and "demo-data" in result.stdout


# --------------------------------------------------------------------------------------------
# train


def test_training_writes_the_artifact_success_file_and_metric_lines(trained):
    tree, result = trained
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"train_local.sh failed:\n{tail(output)}"
    assert len(list((tree / "input" / "data" / "train").glob("*.jpg"))) == 4
    assert len(list((tree / "input" / "data" / "validation").glob("*.jpg"))) == 2
    for name in MODEL_FILES:
        assert (tree / "model" / name).stat().st_size > 0, name
    info = json.loads((tree / "model" / "model_info.json").read_text())
    assert info["base_network"] == "vgg-16" and info["image_shape"] == 300
    assert json.loads((tree / "model" / "hyperparams.json").read_text())["num_classes"] in (3, "3")
    assert (tree / "output" / "success").exists()
    assert not (tree / "output" / "failure").exists()
    for definition in METRIC_DEFINITIONS:
        values = re.findall(definition["Regex"], result.stdout)
        assert values, f"no {definition['Name']} line in stdout:\n{tail(result.stdout)}"
        assert all(float(value) == float(value) for value in values)  # numbers, not NaN
    progress = re.findall(METRIC_DEFINITIONS[-1]["Regex"], result.stdout)
    assert float(progress[-1]) == 100.0


def test_bad_hyperparameters_fail_with_a_failure_file(image, trained, tmp_path):
    tree = make_tree(tmp_path / "opt_ml", {"num_classes": "0", "num_training_samples": "4",
                                           "mini_batch_size": "many", "optimizer": "lbfgs"},
                     data_from=trained[0])
    result = podman("run", "--rm", *RUN_FLAGS, "-v", f"{tree}:/opt/ml", image, "train")
    assert result.returncode == 1, tail(result.stdout + result.stderr)
    failure = (tree / "output" / "failure").read_text()
    assert failure.startswith("ClientError"), failure
    for name in ("num_classes", "mini_batch_size", "optimizer"):
        assert name in failure[:1024], f"{name} not named in the FailureReason:\n{failure}"
    assert not (tree / "output" / "success").exists()
    assert not (tree / "model" / "model_algo_1-0000.params").exists()


def test_sigterm_stops_training_promptly(image, trained, tmp_path):
    """SageMaker stops a job with SIGTERM (then SIGKILL): dumb-init (PID 1) hands it to the
    trainer alone, which stops at a batch boundary; its loader workers must survive until then."""
    tree = make_tree(tmp_path / "opt_ml", dict(TINY_HYPERPARAMETERS, epochs="50"),
                     data_from=trained[0])
    name = f"ssd-sagemaker-test-{uuid.uuid4().hex[:8]}"
    started = podman("run", "-d", "--name", name, *RUN_FLAGS, "-v", f"{tree}:/opt/ml", image,
                     "train")
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 180
        while "#quality_metric" not in podman("logs", name).stdout:
            assert time.monotonic() < deadline, podman("logs", name).stdout[-3000:]
            time.sleep(1)
        stopping = time.monotonic()
        assert podman("stop", "-t", "30", name, timeout=60).returncode == 0
        seconds = time.monotonic() - stopping
        exit_code = int(podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout)
        assert seconds < 15, f"training ignored SIGTERM for {seconds:.0f} s"
        assert exit_code not in (0, 137), f"exit code {exit_code} (137: killed by SIGKILL)"
    finally:
        podman("rm", "-f", "-t", "0", name)


# --------------------------------------------------------------------------------------------
# serve


def test_ping_and_invocations(server, trained):
    url, _, _ = server
    tree = trained[0]
    assert http(f"{url}/ping")[0] == 200
    answer = direct_prediction(url, tree)
    rows = answer["prediction"]
    assert rows, "no detections at all"
    for row in rows:
        class_id, score, *box = row
        assert len(box) == 4 and class_id in (0.0, 1.0, 2.0) and 0.0 <= score <= 1.0, row
        assert all(0.0 <= value <= 1.0 for value in box), row
    status, _ = http(f"{url}/invocations", b"not an image", "text/plain")
    assert status == 415


def test_predict_script(server, trained):
    url, _, _ = server
    tree = trained[0]
    port = url.rsplit(":", 1)[1]
    result = subprocess.run(["bash", str(LOCAL / "predict.sh"), str(first_validation_image(tree))],
                            env=script_env(tree, PORT=port, TIMEOUT="30"),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == direct_prediction(url, tree)


def test_sagemaker_sdk_local_predictor(server, trained, sdk_python):
    """The SDK's own client: LocalSession's LocalSagemakerRuntimeClient behind a Predictor,
    posting to the served container like an endpoint in local mode (no Docker involved)."""
    url, _, _ = server
    tree = trained[0]
    port = int(url.rsplit(":", 1)[1])
    client = textwrap.dedent("""
        import ipaddress, json, socket, sys
        _connect = socket.socket.connect
        def loopback_only(self, address):
            # this test talks to 127.0.0.1 only: refuse anything else the SDK might try
            if self.family in (socket.AF_INET, socket.AF_INET6) and \\
                    not ipaddress.ip_address(address[0]).is_loopback:
                raise OSError(f"refused non-loopback connection to {address}")
            return _connect(self, address)
        socket.socket.connect = loopback_only

        import boto3
        import sagemaker.local.local_session as local_session
        from sagemaker.deserializers import JSONDeserializer
        from sagemaker.local import LocalSession
        from sagemaker.predictor import Predictor
        from sagemaker.serializers import IdentitySerializer

        # Where Docker would publish the port (asked of `docker info`/`docker context`):
        # here the container serves on this machine's loopback.
        local_session.get_docker_host = lambda: "127.0.0.1"
        session = LocalSession(boto_session=boto3.Session(region_name="us-east-1"))
        session.config = {"local": {"local_code": True, "serving_port": int(sys.argv[1])}}
        predictor = Predictor("ssd-sagemaker-local", sagemaker_session=session,
                              serializer=IdentitySerializer("image/jpeg"),
                              deserializer=JSONDeserializer())
        with open(sys.argv[2], "rb") as image:
            print(json.dumps(predictor.predict(image.read())))
    """)
    env = dict(os.environ, SAGEMAKER_SUPPRESS_V2_WARNING="1", AWS_EC2_METADATA_DISABLED="true")
    result = subprocess.run([str(sdk_python), "-c", client, str(port),
                             str(first_validation_image(tree))],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == direct_prediction(url, tree)


def test_serve_is_right_sized_under_700m_and_2_cpus(image, trained, tmp_path):
    """The issue's measurement: under `--memory 700m --cpus 2` (VGG-16, 300 px) `serve` started
    2 workers and a burst of 16 requests got one OOM-killed and a client a closed connection.
    Now the cgroup limits give 1 worker, logged with its numbers, and all 16 are answered."""
    tree = trained[0]
    port = free_port()
    name = f"ssd-sagemaker-sized-{uuid.uuid4().hex[:8]}"
    started = podman("run", "-d", "--name", name, *RUN_FLAGS, "--memory", "700m", "--cpus", "2",
                     "-e", f"SAGEMAKER_BIND_TO_PORT={port}", "-v", f"{tree}:/opt/ml", image,
                     "serve")
    assert started.returncode == 0, started.stderr
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_healthy(url, 180, interval=0.5)
        except NotHealthy as error:
            raise AssertionError(f"{error}:\n{tail(podman('logs', name).stdout)}") from None
        body = first_validation_image(tree).read_bytes()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda _: http(f"{url}/invocations", body, "image/jpeg",
                                                    timeout=170)[0], range(16)))
        assert statuses == [200] * 16
        logs = podman("logs", name)
        text = logs.stdout + logs.stderr
        assert "1 workers by default = the fewest of 2 for the 2 CPUs (cgroup v" in text, tail(text)
        assert "memory.limit_in_bytes" in text or "memory.max" in text
        assert "was sent SIGKILL" not in text and "Perhaps out of memory" not in text, tail(text)
    finally:
        podman("rm", "-f", "-t", "0", name, timeout=60)


def test_sigterm_stops_the_server_promptly(server):
    """Last: stops the module's server (SageMaker sends SIGTERM, then SIGKILL after ~30 s)."""
    _, process, name = server
    stopping = time.monotonic()
    assert podman("stop", "-t", "30", name, timeout=60).returncode == 0
    assert process.wait(timeout=60) == 0
    assert time.monotonic() - stopping < 10
