"""gpu_support.py + cuda_driver.py: every GPU of the table gets the verdict the binaries allow
(fake device lists), unsupported GPUs stop train/serve/predict with a ClientError before any
GPU work, fusion is switched off where NVRTC cannot compile, and the driver is read through the
real ctypes calls (a fake libcuda.so.1 built from C)."""

from __future__ import annotations

import logging

import pytest

from fake_cuda import A10G, H100, L4, NVRTC_11_2_ARCHS, NVRTC_11_8_ARCHS, build_fake_cuda
from ssd_sagemaker import cli, gpu_support
from ssd_sagemaker.cuda_driver import Gpu, Nvrtc, Probe, probe_in_child
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.gpu_support import CUDA_BUILDS, assess, check_gpus

CU112 = CUDA_BUILDS["mxnet-cu112"]
NVRTC_11_2 = Nvrtc((11, 2), tuple(int(a) for a in NVRTC_11_2_ARCHS.split(",")))
NVRTC_11_8 = Nvrtc((11, 8), tuple(int(a) for a in NVRTC_11_8_ARCHS.split(",")))


@pytest.mark.parametrize("capability, kernels, fusion_11_2, fusion_11_8", [
    ((3, 7), None, False, False),               # K80, ml.p2
    ((5, 2), "sm_50 cubins", True, True),       # Maxwell: same major as sm_50
    ((7, 0), "sm_70 cubins", True, True),       # V100, ml.p3
    ((7, 5), "sm_70 cubins", True, True),       # T4, ml.g4dn
    ((8, 0), "sm_80 cubins", True, True),       # A100, ml.p4d
    ((8, 6), "sm_86 cubins", True, True),       # A10G, ml.g5
    ((8, 9), "sm_86 cubins", False, True),      # L4 / L40S, ml.g6 / g6e
    ((9, 0), None, False, False),               # H100 / H200, ml.p5
    ((10, 0), None, False, False),              # a future architecture
    ((12, 0), None, False, False),
])
def test_each_compute_capability_gets_the_verdict_the_binaries_allow(
        capability, kernels, fusion_11_2, fusion_11_8):
    old, new = assess(capability, CU112, NVRTC_11_2), assess(capability, CU112, NVRTC_11_8)
    assert old.kernels == new.kernels == kernels
    assert old.usable == new.usable == (kernels is not None)
    assert (old.fusion, new.fusion) == (fusion_11_2, fusion_11_8)


def test_nvrtc_without_an_arch_list_is_judged_by_its_version():
    assert not assess((8, 9), CU112, Nvrtc((11, 2))).fusion
    assert assess((8, 9), CU112, Nvrtc((11, 8))).fusion
    assert assess((7, 5), CU112, Nvrtc((11, 2))).fusion
    assert not assess((8, 6), CU112, None).fusion  # no NVRTC at all: fusion cannot compile


def _check(gpus, nvrtc=NVRTC_11_8, environ=None):
    probe = Probe(535, tuple(Gpu(i, name, cap, 16 << 30) for i, (name, cap) in enumerate(gpus)),
                  nvrtc)
    environ = {} if environ is None else environ
    gpu_support.apply_gpu_check(gpu_support.inspect_gpus((CU112, "1.9.1"), probe), environ)
    return environ


@pytest.mark.parametrize("name, capability, family", [
    ("NVIDIA H100 80GB HBM3", (9, 0), "ml.p5"),
    ("Tesla K80", (3, 7), "ml.p2"),
    ("NVIDIA B200", (10, 0), None),
])
def test_an_unsupported_gpu_is_a_client_error_naming_it_and_the_alternatives(
        name, capability, family):
    with pytest.raises(ClientError) as raised:
        _check([("NVIDIA A10G", (8, 6)), (name, capability)])
    message = str(raised.value)
    assert f"GPU 1 '{name}'" in message
    assert f"compute capability {capability[0]}.{capability[1]}" in message
    assert (f"SageMaker {family}" in message) if family else "SageMaker" not in message
    for works in ("ml.p3/ml.p3dn (V100)", "ml.g4dn (T4)", "ml.p4d/ml.p4de (A100)",
                  "ml.g5 (A10G)", "ml.g6 (L4)", "ml.g6e (L40S)"):
        assert works in message
    assert "ml.p5" not in message.split("Use an instance")[1]
    assert "CPU image" in message and "CUDA error 209" in message
    assert len(message) < 1024  # SageMaker's FailureReason shows 1024 characters


def test_sm89_with_an_old_nvrtc_switches_fusion_off_and_logs_it(caplog):
    caplog.set_level(logging.INFO, logger="ssd_sagemaker.gpu_support")
    assert _check([("NVIDIA L4", (8, 9))], NVRTC_11_2) == {"MXNET_USE_FUSION": "0"}
    assert "NVRTC 11.2 cannot compile for compute capability 8.9: MXNET_USE_FUSION=0" in caplog.text


def test_sm89_with_nvrtc_11_8_keeps_fusion_and_logs_it(caplog):
    caplog.set_level(logging.INFO, logger="ssd_sagemaker.gpu_support")
    assert _check([("NVIDIA L4", (8, 9))], NVRTC_11_8) == {}
    assert "NVRTC 11.8 compiles for every GPU: MXNet's pointwise fusion stays on" in caplog.text
    assert "sm_86 cubins (same major)" in caplog.text


def test_a_users_fusion_setting_is_kept(caplog):
    caplog.set_level(logging.INFO, logger="ssd_sagemaker.gpu_support")
    assert _check([("NVIDIA L4", (8, 9))], NVRTC_11_2,
                  {"MXNET_USE_FUSION": "1"}) == {"MXNET_USE_FUSION": "1"}
    assert "MXNET_USE_FUSION=1 as set" in caplog.text


def test_supported_gpus_and_a_driver_without_gpus_pass(caplog):
    caplog.set_level(logging.INFO, logger="ssd_sagemaker.gpu_support")
    assert _check([("Tesla V100-SXM2-16GB", (7, 0)), ("Tesla T4", (7, 5))]) == {}
    assert _check([]) == {}
    assert "the NVIDIA driver sees no GPU: MXNet uses the CPU" in caplog.text


def test_the_gpu_build_without_a_driver_is_a_client_error():
    """mxnet-cu112 cannot even be imported without libcuda.so.1: say so instead of an OSError."""
    check = gpu_support.inspect_gpus((CU112, "1.9.1"), Probe())
    with pytest.raises(ClientError, match=r"This is the GPU image \(mxnet-cu112==1.9.1\), whose "
                                          r"MXNet cannot even be loaded without the NVIDIA "
                                          r"driver \(libcuda.so.1\).*--gpus all.*CPU image"):
        gpu_support.apply_gpu_check(check, {})


def test_the_cpu_wheel_never_reads_the_driver(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the driver was read although MXNet is the CPU build")
    monkeypatch.setattr(gpu_support, "probe_in_child", fail)
    check = check_gpus({})  # this venv has the CPU wheel `mxnet`
    assert check.build is None and check.probe.gpus == ()


@pytest.fixture
def fake_driver(tmp_path, monkeypatch):
    """The fake libcuda.so.1/libnvrtc.so.11.2 first on LD_LIBRARY_PATH (read by probe children)."""
    folder = build_fake_cuda(tmp_path / "fake_cuda")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(folder))
    return monkeypatch


def test_the_driver_is_read_through_ctypes(fake_driver):
    fake_driver.setenv("FAKE_CUDA_GPUS", f"{A10G};{L4}")
    fake_driver.setenv("FAKE_NVRTC_VERSION", "11.8")
    fake_driver.setenv("FAKE_NVRTC_ARCHS", NVRTC_11_8_ARCHS)
    probe = probe_in_child("libnvrtc.so.11.2")
    assert probe.driver_version == 12040 and probe.error is None
    assert probe.gpus == (Gpu(0, "NVIDIA A10G", (8, 6), 22731 << 20),
                          Gpu(1, "NVIDIA L4", (8, 9), 23034 << 20))
    assert probe.nvrtc == NVRTC_11_8


def test_a_driver_without_devices_and_no_driver_mean_the_cpu(fake_driver, monkeypatch):
    fake_driver.setenv("FAKE_CUDA_GPUS", "")
    probe = probe_in_child("libnvrtc.so.11.2")
    assert probe.driver_version == 12040 and probe.gpus == () and probe.error is None
    fake_driver.setenv("FAKE_CUDA_INIT_ERROR", "999")
    assert probe_in_child(None).error == "cuInit failed with CUDA error 999"
    monkeypatch.setenv("LD_LIBRARY_PATH", "/nonexistent")
    assert probe_in_child("libnvrtc.so.11.2") == Probe()


@pytest.mark.parametrize("command", [["train"], ["serve"], ["predict", "image.jpg"],
                                     ["selftest"]])
def test_the_gpu_build_without_a_driver_stops_every_command_clearly(tmp_path, monkeypatch,
                                                                     command, caplog):
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))  # no libcuda.so.1 there
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path / "opt_ml"))
    monkeypatch.setattr(gpu_support, "installed_cuda_build", lambda: (CU112, "1.9.1"))
    assert cli.main(command) == 1
    assert "whose MXNet cannot even be loaded without the NVIDIA driver" in caplog.text


@pytest.mark.parametrize("command", [["train"], ["serve"], ["predict", "image.jpg"]])
def test_train_serve_and_predict_refuse_an_h100_before_anything_else(
        fake_driver, tmp_path, command, caplog):
    fake_driver.setenv("FAKE_CUDA_GPUS", H100)
    (tmp_path / "opt_ml").mkdir()  # a tree (never created by train), with no config, no model
    fake_driver.setenv("SAGEMAKER_BASE_DIR", str(tmp_path / "opt_ml"))
    fake_driver.setattr(gpu_support, "installed_cuda_build", lambda: (CU112, "1.9.1"))
    assert cli.main(command) == 1
    out = caplog.text
    assert "GPU 0 'NVIDIA H100 80GB HBM3' (SageMaker ml.p5/ml.p5e/ml.p5en) has compute " \
           "capability 9.0, which mxnet-cu112==1.9.1 cannot run" in out
    failure = tmp_path / "opt_ml" / "output" / "failure"
    if command == ["train"]:
        assert "compute capability 9.0" in failure.read_text()
    else:
        assert not failure.exists()
