"""The SageMaker Python SDK (v2) driving the image in local mode, as a user's script would.

Run by test_sdk_local_mode.py with the SDK's own venv (not the project's: numpy clash), as
`python sdk_local_mode_client.py PLAN.json REPORT.json`. PLAN holds the image, the channel
folder, a work folder, two free ports and the hyperparameters. Each step runs even when an
earlier one failed (as far as it can), and the report is rewritten after every step, so the
test judges each step by its files: {step: {"seconds", "error", ...}}. The SDK writes the
containers' output to stdout; each step's goes to WORK/<step>.log.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

import boto3
from sagemaker.deserializers import JSONDeserializer
from sagemaker.estimator import Estimator
from sagemaker.inputs import TrainingInput
from sagemaker.local import LocalSession
from sagemaker.local.image import _HostingContainer
from sagemaker.serializers import IdentitySerializer

CHANNELS = ("train", "validation", "train_annotation", "validation_annotation")
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"  # never used in local mode


class Steps:
    """Runs named steps, each with its output in its own log, and records what they return."""

    def __init__(self, work: Path, report_file: Path):
        self.work = work
        self.report_file = report_file
        self.report: dict[str, dict] = {}

    def run(self, name: str, step, *args):
        started = time.monotonic()
        entry: dict = {"log": str(self.work / f"{name}.log")}
        with open(entry["log"], "w") as log, contextlib.redirect_stdout(log):
            try:
                entry["error"] = None
                entry.update(step(*args) or {})
            except Exception as error:  # noqa: BLE001 - recorded for the test to judge
                entry["error"] = f"{type(error).__name__}: {error}"
                traceback.print_exc(file=log)
        entry["seconds"] = round(time.monotonic() - started, 1)
        self.report[name] = entry
        self.report_file.write_text(json.dumps(self.report, indent=1))
        print(f"{name}: {entry['seconds']} s, error: {entry['error']}", file=sys.stderr,
              flush=True)
        return entry


def _wait_until_closed(port: int, timeout: float = 120) -> None:
    """delete_endpoint() only signals docker-compose to stop the container: the next endpoint
    or transform job (same serving port) can start once the old one has let go of the port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(1)
    raise TimeoutError(f"the deleted endpoint still holds port {port} after {timeout:.0f} s")


def main(plan_file: str, report_file: str) -> None:
    plan = json.loads(Path(plan_file).read_text())
    work = Path(plan["work"])
    (work / "containers").mkdir(exist_ok=True)
    session = LocalSession(boto_session=boto3.Session(region_name="us-east-1"))
    session.config = {"local": {"local_code": True, "container_root": str(work / "containers"),
                                "serving_port": plan["port"]}}
    channels = {name: TrainingInput(f"file://{plan['data']}/{name}", content_type="image/jpeg")
                for name in CHANNELS}
    steps = Steps(work, Path(report_file))
    estimators: dict[str, Estimator] = {}

    def fit(name: str, instance_count: int, model_uri: str | None = None) -> dict:
        output = work / name
        output.mkdir()
        estimator = Estimator(image_uri=plan["image"], role=ROLE, instance_count=instance_count,
                              instance_type="local", hyperparameters=plan["hyperparameters"],
                              output_path=f"file://{output}", base_job_name="ssd-local",
                              model_uri=model_uri, sagemaker_session=session)
        estimators[name] = estimator
        try:
            estimator.fit(channels, wait=True, logs=True)
            error = None
        except Exception as raised:  # noqa: BLE001 - the test judges the job by its files
            error = f"{type(raised).__name__}: {raised}"
            traceback.print_exc(file=sys.stdout)
        return {"error": error, "output": str(output),
                "files": sorted(path.name for path in output.iterdir())}

    def incremental() -> dict:
        # The model channel holds the archive alone, as SageMaker delivers it. The two-host
        # job's model warm-starts a one-host job: one fit fewer than a plain one-host fit first.
        warm = work / "warm"
        warm.mkdir()
        shutil.copy(work / "distributed" / "model.tar.gz", warm / "model.tar.gz")
        return fit("incremental", 1, f"file://{warm}/model.tar.gz")

    def deploy() -> dict:
        predictor = estimators["incremental"].deploy(
            initial_instance_count=1, instance_type="local",
            serializer=IdentitySerializer("image/jpeg"), deserializer=JSONDeserializer())
        try:
            image = Path(plan["image_file"]).read_bytes()
            return {"default": predictor.predict(image),
                    "annotation": predictor.predict(
                        image, initial_args={"Accept": "application/json;annotation=1"})}
        finally:
            predictor.delete_endpoint()
            _wait_until_closed(plan["port"])

    def transform() -> dict:
        output = work / "transform"
        transformer = estimators["incremental"].transformer(
            instance_count=1, instance_type="local", strategy="SingleRecord", max_payload=6,
            output_path=f"file://{output}")
        # logs=False: following a transform job's logs asks CloudWatch, even in local mode.
        transformer.transform(f"file://{plan['data']}/validation", content_type="image/jpeg",
                              wait=True, logs=False)
        return {"output": str(output)}

    try:
        steps.run("distributed", fit, "distributed", 2)
        steps.run("incremental", incremental)
        steps.run("deploy", deploy)
        steps.run("transform", transform)
    finally:
        _stop_serving_threads()


def _stop_serving_threads() -> None:
    """A transform job that failed midway leaves its docker-compose running in a non-daemon
    thread (the SDK stops it only on success), which would keep this process alive."""
    for thread in threading.enumerate():
        if isinstance(thread, _HostingContainer) and thread.is_alive():
            thread.down()
            thread.join(timeout=60)


if __name__ == "__main__":
    main(*sys.argv[1:3])
