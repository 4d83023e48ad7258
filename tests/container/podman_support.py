"""What the container tests share: the image's name, podman with this machine's flags, helper
venvs cached between runs, small HTTP and log helpers. Imported by conftest.py and the test
modules of this folder (pytest puts the folder on sys.path)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LOCAL = ROOT / "docker" / "local"
IMAGE = os.environ.get("SSD_SAGEMAKER_TEST_IMAGE", "localhost/ssd-sagemaker:test")
BASE_IMAGE = "localhost/base"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CACHE = Path(os.environ.get("SSD_SAGEMAKER_CACHE", Path.home() / ".cache" / "ssd-sagemaker"))
# runc (crun fails on this kernel's hybrid cgroups); podman's default rlimits are refused here.
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"]
RUN_FLAGS = [*ULIMITS, "--network", "host"]


class VenvUnavailable(Exception):
    """A helper venv could not be installed here (the message holds pip's last lines)."""


def podman(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", "--runtime", "runc", *args], capture_output=True, text=True,
                          timeout=timeout)


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def http(url: str, body: bytes | None = None, content_type: str | None = None,
         timeout: float = 60) -> tuple[int, bytes]:
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=body, headers=headers,
                                     method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def cached_venv(name: str, check: str, installs: Sequence[Sequence[str]]) -> Path:
    """The python of a venv under the cache, made by the `pip install` argument lists in
    `installs` (in order) unless `python -c check` already succeeds there: tools whose
    dependencies clash with the project's (numpy, requests) never join the project's venv."""
    venv = CACHE / name
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", check],
                                          capture_output=True).returncode == 0:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    for arguments in installs:
        installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                                    "--disable-pip-version-check", *arguments],
                                   capture_output=True, text=True, timeout=900)
        if installed.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise VenvUnavailable(f"pip install {' '.join(arguments)}: "
                                  f"{tail(installed.stderr, 5)}")
    return python
