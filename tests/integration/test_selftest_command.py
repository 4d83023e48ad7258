"""`ssd-sagemaker selftest` end to end on CPUs: real training steps and inference of both base
networks on cpu(0), and on cpu(1) compared with cpu(0) (the path a GPU takes), exit 0 "ready";
an unusable device is a reason and exit 1."""

from __future__ import annotations

import re

import pytest

from cli_runner import run_cli

pytestmark = pytest.mark.slow  # builds and trains both SSDs for a step or two

QUICK = ("--batch-size", "1", "--steps", "2")


def test_selftest_on_cpus_trains_compares_and_says_ready(tmp_path):
    result = run_cli(tmp_path, "selftest", *QUICK, "--devices", "cpu:1", timeout=600)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr[-3000:]
    assert out.rstrip().endswith("ready")
    assert re.search(r"Python 3\.11\.\d+, MXNet 1\.9\.1 \(CPU build\), GluonCV 0\.10\.5", out)
    assert re.search(r"CPU: .*, \d+ cores, bfloat16 instructions: (yes|no): runs", out)
    assert "vgg-16: vgg16_atrous-4fa2e1ad.params MISSING" in out  # the test's empty cache
    for base in ("vgg-16", "resnet-50"):
        for device in ("cpu(0)", "cpu(1)"):
            speeds = re.search(rf"{base} on {re.escape(device)}: losses "
                               rf"\(cross-entropy/smooth-L1\) [\d.]+/[\d.]+, [\d.]+/[\d.]+; "
                               rf"training ([\d.]+) images/s "
                               rf"\((?:float32|bfloat16)\), inference ([\d.]+) images/s", out)
            assert speeds and float(speeds[1]) > 0 and float(speeds[2]) > 0, out
        for what in ("network outputs", "float32 losses"):
            assert re.search(rf"{base} on cpu\(1\): {what} against the CPU: differ by "
                             rf"[\d.e+-]+ \(within 2%\)", out), out


def test_a_device_that_fails_is_a_reason_and_exit_1(tmp_path):
    # The CPU build has no GPU: gpu:0 fails as a broken GPU would, after the CPU reference ran.
    result = run_cli(tmp_path, "selftest", *QUICK, "--base-network", "resnet-50",
                     "--image-shape", "128", "--devices", "gpu:0", timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    assert "resnet-50 on cpu(0): losses" in result.stdout
    assert "PROBLEM: resnet-50 on gpu(0) failed: MXNetError" in result.stdout
    assert "not ready: 1 problem(s):" in result.stdout
    assert "selftest: not ready: resnet-50 on gpu(0) failed" in result.stdout + result.stderr
