"""Session fixtures of the container tests: podman ready, the image built once per run (every
module of this folder uses the same build), the SageMaker Python SDK in its own venv."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from podman_support import (
    BASE_IMAGE,
    CA_BUNDLE,
    HERE,
    IMAGE,
    ROOT,
    RUN_FLAGS,
    ULIMITS,
    VenvUnavailable,
    cached_venv,
    podman,
    tail,
)

from made_once import made_once

SDK_REQUIREMENT = "sagemaker>=2.200,<3"


@pytest.fixture(scope="session")
def engine(tmp_path_factory) -> None:
    if os.environ.get("SSD_SAGEMAKER_SKIP_CONTAINER") == "1":
        pytest.skip("container tests skipped: SSD_SAGEMAKER_SKIP_CONTAINER=1")
    if os.geteuid() != 0:
        pytest.skip("container tests need root here (apt-get, debootstrap, rootful podman)")
    made_once(tmp_path_factory, "podman", _prepare)  # apt-get takes one caller at a time


def _prepare(_: Path) -> None:
    """podman and the base image ready, or the container tests skipped saying why."""
    prepared = subprocess.run(["bash", str(HERE / "prepare.sh")], capture_output=True, text=True,
                              timeout=900)
    if prepared.returncode == 3:
        pytest.skip(f"podman cannot run here: {prepared.stderr.strip()}")
    assert prepared.returncode == 0, \
        f"prepare.sh failed:\n{tail(prepared.stdout + prepared.stderr)}"
    probe = podman("run", "--rm", *RUN_FLAGS, BASE_IMAGE, "true", timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"podman cannot start a container here: {probe.stderr.strip()[-500:]}")


@pytest.fixture(scope="session")
def image(engine, tmp_path_factory) -> str:
    """The CPU image, built as a user would (layers cached by podman between runs), once per
    run whichever test worker asks first."""
    return made_once(tmp_path_factory, "image", _build)


def _build(folder: Path) -> str:
    command = ["podman", "build", "--runtime", "runc", "--network", "host", *ULIMITS,
               "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--build-arg", "FLAVOUR=cpu",
               "--build-arg", "PRETRAINED_WEIGHTS=0", "-t", IMAGE]
    if CA_BUNDLE.is_file():
        # This machine's package registry is reached through the host's CA bundle.
        command += ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    if os.environ.get("PIP_INDEX_URL", "").startswith("http"):
        command += ["--build-arg", f"PIP_INDEX_URL={os.environ['PIP_INDEX_URL']}"]
    log = folder / "build.log"
    started = time.monotonic()
    with log.open("w") as handle:
        built = subprocess.run([*command, str(ROOT)], stdout=handle, stderr=subprocess.STDOUT,
                               timeout=1800)
    print(f"\nimage {IMAGE} built in {time.monotonic() - started:.0f} s")
    assert built.returncode == 0, f"podman build failed:\n{tail(log.read_text(), 80)}"
    return IMAGE


@pytest.fixture(scope="session")
def sdk_python(engine) -> Path:
    """A Python with the SageMaker Python SDK (v2), in its own venv under the cache: the SDK
    needs numpy >= 1.26, the project numpy < 1.24, so it never joins the project's venv."""
    try:
        return cached_venv("sagemaker-sdk-venv", "import sagemaker.local, sagemaker.predictor",
                           [[SDK_REQUIREMENT]])
    except VenvUnavailable as error:
        pytest.skip(f"the SageMaker Python SDK ({SDK_REQUIREMENT}) is not installable here: "
                    f"{error}")
