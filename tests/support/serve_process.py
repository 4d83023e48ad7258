"""`python -m ssd_sagemaker serve` as a real process on a free loopback port, for the end-to-end
serving tests (several test modules drive it, so it lives here rather than in one of them)."""

import signal
import subprocess
import sys
from pathlib import Path

import requests

from cli_runner import cli_env
from serving_samples import encode, export_untrained_model, noise
from ssd_sagemaker.serving.loopback import NotHealthy, free_port, wait_until_healthy

BOOT_SECONDS = 120


def opt_ml_with_untrained_model(base: Path) -> Path:
    """`base` as an /opt/ml tree whose model/ holds an exported, untrained VGG-16 SSD300."""
    export_untrained_model(base / "model")
    return base


class Server:
    """`python -m ssd_sagemaker serve` on a free loopback port, its output in a file."""

    def __init__(self, base: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = base / f"serve-{self.port}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ssd_sagemaker", "serve"],
                env=cli_env(base, SAGEMAKER_BIND_TO_PORT=str(self.port), **env),
                stdout=log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text()

    def wait_ready(self) -> "Server":
        try:
            wait_until_healthy(self.url, BOOT_SECONDS, self.process)
        except NotHealthy as error:
            raise AssertionError(f"{error}:\n{self.output()[-3000:]}") from None
        return self

    def workers(self) -> set[int]:
        pid = self.process.pid
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}

    def stop(self, timeout: float = 40) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise

    def post(self, body: bytes = None, content_type: str = "image/jpeg", timeout: float = 120,
             **headers: str) -> requests.Response:
        headers = {"Content-Type": content_type, **headers} if content_type else headers
        return requests.post(f"{self.url}/invocations",
                             data=encode(noise()) if body is None else body,
                             headers=headers, timeout=timeout)
