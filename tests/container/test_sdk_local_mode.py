"""The SageMaker Python SDK's local mode (`instance_type="local"`) as the image's client: the
most faithful one this machine can run. docker-compose 1.29.2 (in its own venv) creates the
containers through podman's Docker API (`podman system service`), the SDK (`sagemaker<3`, in
its own venv) runs tests/container/sdk_local_mode_client.py: `fit` on two hosts, then an
incremental `fit` on one host from that job's model.tar.gz, then `deploy` + `predict` and a
batch transform of that model. Each training job is judged by the `success`/`failure` file in
its output.tar.gz, not by `fit()` returning: docker-compose over podman can lose a failed
container's exit code.

Uses the image that conftest.py builds once per run; skipped where podman cannot run, or when
SSD_SAGEMAKER_SKIP_CONTAINER=1.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from podman_support import HERE, LOCAL, RUN_FLAGS, VenvUnavailable, cached_venv, podman, tail

from ssd_sagemaker.metrics import METRIC_DEFINITIONS
from ssd_sagemaker.serving.loopback import free_port

pytestmark = pytest.mark.slow

COMPOSE_INSTALLS = [  # docker-compose 1.29.2 on Python 3.11 (PyYAML 5.4.1 needs an old build)
    ["wheel", "setuptools<70"],
    ["--no-build-isolation", "pyyaml==5.4.1"],
    ["docker-compose==1.29.2", "docker[ssh]>=5,<6", "requests<2.32", "urllib3<2"],
]
# As a user writes them: the generic Estimator passes each as str(value).
HYPERPARAMETERS = {"num_classes": 3, "num_training_samples": 4, "epochs": 1,
                   "mini_batch_size": 2, "image_shape": 300, "use_pretrained_model": 0}
MODEL_FILES = {"model_algo_1-symbol.json", "model_algo_1-0000.params", "hyperparams.json",
               "model_info.json"}
CLIENT_TIMEOUT = 1500  # seconds for all steps; about 4 minutes when the machine is not shared
PROGRESS_LINE = re.compile(r"epoch \d+ batch (\d+)/(\d+): [\d.]+ images/s, eta ")
SDK_CONFIG = """\
SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      TelemetryOptOut: true
"""


def _docker_api_answers(sock_path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(sock_path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            return b"OK" in sock.recv(4096)
    except OSError:
        return False


@pytest.fixture(scope="module")
def compose_bin(engine) -> Path:
    """docker-compose 1.29.2 in its own venv (it pins requests/urllib3 that the SDK outgrew)."""
    try:
        return cached_venv("docker-compose-venv", "import compose.cli.main",
                           COMPOSE_INSTALLS).parent
    except VenvUnavailable as error:
        pytest.skip(f"docker-compose 1.29.2 is not installable here: {error}")


@pytest.fixture(scope="module")
def docker_api(engine, compose_bin, tmp_path_factory):
    """podman's Docker API on a socket of our own; yields the environment local mode needs:
    DOCKER_HOST, the containers.conf for what compose creates, `docker` (our podman shim, so
    every machine runs the same commands) and docker-compose first on PATH."""
    folder = tmp_path_factory.mktemp("podman-api")
    sock_path = folder / "podman.sock"
    conf = str(LOCAL / "podman" / "containers.conf")
    log = (folder / "service.log").open("w")
    service = subprocess.Popen(["podman", "--runtime", "runc", "system", "service", "--time=0",
                                f"unix://{sock_path}"], env=dict(os.environ, CONTAINERS_CONF=conf),
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _docker_api_answers(sock_path):
            assert service.poll() is None, (folder / "service.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "podman's Docker API did not answer in 60 s"
            time.sleep(0.5)
        yield dict(os.environ, DOCKER_HOST=f"unix://{sock_path}", CONTAINERS_CONF=conf,
                   PATH=os.pathsep.join([str(LOCAL / "podman"), str(compose_bin),
                                         os.environ["PATH"]]))
    finally:
        service.terminate()
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(timeout=30)
        log.close()


def _remove_containers_under(root: Path) -> None:
    """Containers compose left (a deleted endpoint's compose is only sent SIGTERM): those whose
    compose project lives under `root`, and no one else's."""
    listed = podman("ps", "-a", "--format", "json", timeout=60)
    for container in json.loads(listed.stdout or "[]"):
        labels = container.get("Labels") or {}
        if labels.get("com.docker.compose.project.working_dir", "").startswith(str(root)):
            podman("rm", "-f", "-t", "0", container["Id"], timeout=60)


@pytest.fixture(scope="module")
def sdk_run(image, sdk_python, docker_api, tmp_path_factory):
    """Demo data (4 + 2 images) made by the image, then every step of the SDK client; yields
    (report, work folder, channel folder). ~4 minutes on 2 cores."""
    work = tmp_path_factory.mktemp("sdk-local-mode")
    tree = work / "opt_ml"
    tree.mkdir()
    made = podman("run", "--rm", *RUN_FLAGS, "-v", f"{tree}:/opt/ml", image, "demo-data",
                  "--train-images", "4", "--validation-images", "2")
    assert made.returncode == 0, tail(made.stdout + made.stderr)
    data = tree / "input" / "data"
    plan = {"image": image, "data": str(data), "work": str(work),
            "port": free_port(), "hyperparameters": HYPERPARAMETERS,
            "image_file": str(sorted((data / "validation").glob("*.jpg"))[0])}
    (work / "plan.json").write_text(json.dumps(plan))
    (work / "sdk-config.yaml").write_text(SDK_CONFIG)
    env = dict(docker_api, SAGEMAKER_USER_CONFIG_OVERRIDE=str(work / "sdk-config.yaml"),
               SAGEMAKER_SUPPRESS_V2_WARNING="1", AWS_EC2_METADATA_DISABLED="true")
    started = time.monotonic()
    client = subprocess.Popen([str(sdk_python), str(HERE / "sdk_local_mode_client.py"),
                               str(work / "plan.json"), str(work / "report.json")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    try:
        try:
            output, _ = client.communicate(timeout=CLIENT_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(client.pid, signal.SIGKILL)  # the client and the docker-compose it runs
            output, _ = client.communicate(timeout=60)
            output += f"\nSDK client killed after {CLIENT_TIMEOUT} s"
        print(f"\nSDK local mode: {time.monotonic() - started:.0f} s, exit {client.returncode}\n"
              f"{tail(output, 12)}")
        report_file = work / "report.json"
        report = json.loads(report_file.read_text()) if report_file.exists() else {}
        assert report, f"the SDK client reported nothing:\n{tail(output)}"
        yield report, work, data
    finally:
        _remove_containers_under(work)


def _step(sdk_run, name: str) -> tuple[dict, str]:
    report = sdk_run[0]
    assert name in report, f"step {name} did not run: {sorted(report)}"
    entry = report[name]
    return entry, Path(entry["log"]).read_text(errors="replace")


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {member.name.lstrip("./"): tar.extractfile(member).read()
                for member in tar.getmembers() if member.isfile()}


def _judge_training_job(sdk_run, name: str) -> tuple[dict, str]:
    """The job's verdict from its files (output.tar.gz's success/failure), then its model."""
    entry, log = _step(sdk_run, name)
    output = Path(entry.get("output", "/nonexistent"))
    assert (output / "output.tar.gz").is_file(), \
        f"{name}: no output.tar.gz ({entry['error']})\n{tail(log)}"
    outputs = _members(output / "output.tar.gz")
    assert "failure" not in outputs, \
        f"{name} failed: {outputs['failure'].decode()[:2000]}\n{tail(log)}"
    assert "success" in outputs, f"{name}: no success file {sorted(outputs)}\n{tail(log)}"
    assert entry["error"] is None, f"{name}: the job succeeded but fit() raised {entry['error']}"
    model = _members(output / "model.tar.gz")
    assert MODEL_FILES <= set(model), f"{name}: model.tar.gz holds {sorted(model)}"
    assert json.loads(model["hyperparams.json"])["num_classes"] in (3, "3")
    return entry, log


def test_incremental_fit_on_one_host_from_model_tar_gz(sdk_run):
    """A one-host job warm-started from the two-host job's model.tar.gz."""
    entry, log = _judge_training_job(sdk_run, "incremental")
    warm = re.search(r"warm start: loaded (\d+) parameters from the model channel", log)
    assert warm and int(warm.group(1)) > 30, f"no warm start in the log:\n{tail(log)}"
    for definition in METRIC_DEFINITIONS:
        assert re.search(definition["Regex"], log), f"no {definition['Name']} line:\n{tail(log)}"
    # The container has a TTY (compose's `tty: true`) but nobody watches it: progress comes as
    # log lines (4 images / batch 2 = 2 batches, a line each), not as an invisible tqdm bar.
    progress = PROGRESS_LINE.findall(log)
    assert progress == [("1", "2"), ("2", "2")], \
        f"no per-batch progress lines in the job's log:\n{tail(log)}"
    assert "batch/s]" not in log and "it/s]" not in log, "a tqdm bar was drawn into the log"
    print(f"\nincremental fit on 1 host: {entry['seconds']} s; {warm.group(0)}")


def test_fit_on_two_hosts(sdk_run):
    entry, log = _judge_training_job(sdk_run, "distributed")
    hosts = set(re.findall(r"\b(algo-[12]-[a-z0-9]{5})\b", log))
    assert len(hosts) == 2, f"expected the log of two hosts, found {sorted(hosts)}:\n{tail(log)}"
    assert "dist_sync" in log, tail(log)
    # Each host trains on its half (2 of 4 images: 1 batch) and says so in a line.
    assert PROGRESS_LINE.findall(log) == [("1", "1"), ("1", "1")], tail(log)
    print(f"\nfit on 2 hosts: {entry['seconds']} s")


def test_deploy_and_predict(sdk_run):
    entry, log = _step(sdk_run, "deploy")
    assert entry["error"] is None, f"{entry['error']}\n{tail(log)}"
    rows = entry["default"]["prediction"]
    assert rows, "no detections at all"
    for class_id, score, *box in rows:
        assert class_id in (0.0, 1.0, 2.0) and 0.0 <= score <= 1.0 and len(box) == 4, rows
    annotated = entry["annotation"]
    assert annotated["image_size"][0]["depth"] == 3, annotated
    assert len(annotated["annotations"]) == len(rows), annotated
    assert {"class_id", "score", "left", "top", "width", "height"} <= \
        set(annotated["annotations"][0])
    print(f"\ndeploy + 2 predictions: {entry['seconds']} s")


def test_batch_transform(sdk_run):
    entry, log = _step(sdk_run, "transform")
    assert entry["error"] is None, f"{entry['error']}\n{tail(log)}"
    images = sorted(path.name for path in (sdk_run[2] / "validation").glob("*.jpg"))
    outputs = sorted(Path(entry["output"]).glob("*.out"))
    assert [path.name for path in outputs] == [f"{name}.out" for name in images]
    for path in outputs:
        assert "prediction" in json.loads(path.read_text()), path.read_text()[:500]
    print(f"\nbatch transform of {len(outputs)} images: {entry['seconds']} s")
