"""selftest.py: the comparison flags a device whose results drift beyond the stated tolerance
(or whose loss is not finite), refused GPUs make the report "not ready", and the device list
given on the command line is checked. The real run on CPUs:
tests/integration/test_selftest_command.py."""

from __future__ import annotations

import math

import mxnet as mx
import numpy as np
import pytest

from fake_cuda import A10G, H100, build_fake_cuda
from ssd_sagemaker import gpu_support, selftest
from ssd_sagemaker.selftest import (
    FLOAT32_TOLERANCE,
    MIXED_TOLERANCE,
    DeviceRun,
    Selftest,
    parse_devices,
    relative_difference,
)
from ssd_sagemaker.training.agreement import PassResult, compare


def _run(scale=1.0, losses=((2.0, 1.0), (1.5, 0.9)), mixed=()):
    outputs = [np.linspace(-3, 3, 60).reshape(3, 20) * scale, np.ones((3, 4)) * scale]
    return DeviceRun(outputs, list(losses), "float16" if mixed else "float32", list(mixed))


def _judged(run, reference):
    lines: list[str] = []
    test = Selftest(emit=lines.append)
    test.judge("vgg-16", mx.cpu(1), run, reference)
    return test, "\n".join(lines)


def test_relative_difference_is_against_the_largest_reference_value():
    reference = [np.array([1.0, -4.0]), np.array([2.0])]
    assert relative_difference([np.array([1.0, -4.04]), np.array([2.0])], reference) \
        == pytest.approx(0.01)
    assert relative_difference([np.array([np.nan, -4.0]), np.array([2.0])], reference) == math.inf


def test_results_within_tolerance_pass():
    test, text = _judged(_run(1 + FLOAT32_TOLERANCE / 2), _run())
    assert test.reasons == []
    assert "network outputs against the CPU: differ by 1.00e-02 (within 2%)" in text


def test_outputs_beyond_tolerance_are_a_problem():
    test, text = _judged(_run(1 + 2 * FLOAT32_TOLERANCE), _run())
    assert test.reasons == ["vgg-16 on cpu(1): network outputs against the CPU differ by "
                            "4.00e-02, more than 2%"]
    assert "PROBLEM" in text


def test_losses_beyond_tolerance_and_non_finite_losses_are_problems():
    test, _ = _judged(_run(losses=((2.0, 1.0), (1.0, 0.9))), _run())
    assert test.reasons == ["vgg-16 on cpu(1): float32 losses against the CPU differ by "
                            "2.50e-01, more than 2%"]
    test, _ = _judged(_run(losses=((2.0, math.nan), (1.5, 0.9))), None)
    assert test.reasons[0] == "vgg-16 on cpu(1): a training loss is not finite"


def test_mixed_precision_losses_are_held_to_their_tolerance():
    close = [(2.0 * (1 + MIXED_TOLERANCE / 2), 1.0), (1.5, 0.9)]
    assert _judged(_run(mixed=close), None)[0].reasons == []
    far = [(2.0 * (1 + 2 * MIXED_TOLERANCE), 1.0), (1.5, 0.9)]
    assert _judged(_run(mixed=far), None)[0].reasons == [
        "vgg-16 on cpu(1): float16 losses against float32 differ by 1.00e-01, more than 5%"]


def test_a_refused_gpu_makes_the_report_not_ready(tmp_path, monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", str(build_fake_cuda(tmp_path / "cuda")))
    monkeypatch.setenv("FAKE_CUDA_GPUS", f"{A10G};{H100}")
    monkeypatch.setattr(selftest, "installed_cuda_build",
                        lambda: (gpu_support.CUDA_BUILDS["mxnet-cu112"], "1.9.1"))
    lines: list[str] = []
    assert not Selftest(base_networks=(), emit=lines.append).run()
    text = "\n".join(lines)
    assert "GPU 0: NVIDIA A10G, compute capability 8.6, 22.2 GiB: native cubins" in text
    assert "GPU 1: NVIDIA H100 80GB HBM3, compute capability 9.0, 79.6 GiB: refused" in text
    assert "not ready: 1 problem(s):" in text and "CUDA error 209" in text
    assert "ready" not in lines


def test_the_cpu_build_ignores_gpus_it_sees(tmp_path, monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", str(build_fake_cuda(tmp_path / "cuda")))
    monkeypatch.setenv("FAKE_CUDA_GPUS", H100)
    lines: list[str] = []
    assert Selftest(base_networks=(), emit=lines.append).run()
    assert "  GPU 0: NVIDIA H100 80GB HBM3, compute capability 9.0, 79.6 GiB: not used (the " \
           "installed MXNet is the CPU build)" in lines
    assert lines[-1] == "ready"


def test_devices_are_parsed_and_checked():
    assert parse_devices("gpu:0, gpu:1") == [mx.gpu(0), mx.gpu(1)]
    assert parse_devices("cpu:1") == [mx.cpu(1)]
    with pytest.raises(ValueError, match="'tpu:0' is not cpu:N or gpu:N"):
        parse_devices("tpu:0")


def test_selftest_prints_the_support_window_and_the_page_explains_each_part():
    from pathlib import Path

    from ssd_sagemaker.selftest import Selftest
    from ssd_sagemaker.support_window import PAGE, SUPPORT_WINDOW

    lines: list[str] = []
    Selftest(emit=lines.append).report_support_window()
    assert lines[0] == "support window:"
    assert any("Python" in line and "security fixes until 2027-10" in line for line in lines)
    assert any("MXNet" in line and "no upstream fixes" in line for line in lines)
    assert lines[-1].endswith(f"{PAGE})")
    page = (Path(__file__).resolve().parents[2] / PAGE).read_text()
    for part, _, _ in SUPPORT_WINDOW:
        assert part in page, part
    assert "2027-10" in page


def test_autos_float16_verdict_is_reported_as_train_would_act_on_it():
    reference = PassResult((2.0, 1.0), {"w": np.array([1.0, 2.0])})
    agreeing = compare("float16", PassResult((2.001, 1.0), {"w": np.array([1.0, 2.001])}),
                       reference)
    test, text = _judged(_run(mixed=((2.0, 1.0), (1.5, 0.9))), None)
    assert "precision=auto" not in text  # no verdict where no check ran (CPU, float32)
    run = _run(mixed=((2.0, 1.0), (1.5, 0.9)))
    run.agreement = agreeing
    test, text = _judged(run, None)
    assert test.reasons == []
    assert ("vgg-16 on cpu(1): precision=auto: float16 agrees with float32 on the first batch: "
            "losses differ by 5.00e-04") in text and "train uses it" in text
    run = _run()
    run.agreement = compare("float16", PassResult((math.inf, 1.0), {"w": np.array([1.0, 2.0])}),
                            reference)
    test, text = _judged(run, None)
    assert test.reasons == []  # train still runs, in float32: a finding, not a failure
    assert ("float16 disagrees with float32 on the first batch: its losses are not finite "
            "(inf, 1: the forward pass overflows); train falls back to float32 with a "
            "warning") in text
