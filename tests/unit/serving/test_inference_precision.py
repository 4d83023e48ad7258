"""SSD_INFERENCE_PRECISION: read with the serving settings, checked against the artifact and
the CPU before a worker starts. `serve` refuses int8 without the INT8 network (naming the
hyperparameter that makes it) and bfloat16 on a CPU without the instructions — for real on
this CPU when it has none, and accepted with faked CPU flags."""

import shutil
import subprocess
import sys
from dataclasses import replace

import pytest

from cli_runner import cli_env
from ssd_sagemaker.cpu_features import cpu_has_bfloat16
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.artifact import (
    INT8_PARAMS_FILE,
    INT8_SYMBOL_FILE,
    Int8Network,
    read_model_info,
)
from ssd_sagemaker.serving.config import read_inference_precision, read_serving_config
from ssd_sagemaker.serving.precision import resolve_inference_precision
from ssd_sagemaker.serving.predictor import Predictor
from tiny_model import export_tiny_model

ENTRY = Int8Network(INT8_SYMBOL_FILE, INT8_PARAMS_FILE, ("conv0",), 32, 0.99)


@pytest.fixture
def float32_model(tmp_path):
    return export_tiny_model(tmp_path / "model")


def _with_int8_files(model_dir):
    """The artifact as `quantize=int8` leaves it, with stand-in INT8 files (resolution only
    looks at their presence; tests/unit/model/test_quantization.py writes real ones)."""
    for name in (INT8_SYMBOL_FILE, INT8_PARAMS_FILE):
        shutil.copy(model_dir / name.replace("-int8", ""), model_dir / name)
    return replace(read_model_info(model_dir), int8=ENTRY)


def test_the_variable_is_read_with_the_serving_settings():
    assert read_serving_config({}, cpus=2, gpus=0).precision == "float32"
    assert read_serving_config({"SSD_INFERENCE_PRECISION": " INT8 "}, cpus=2,
                               gpus=0).precision == "int8"
    assert read_inference_precision({"SSD_INFERENCE_PRECISION": "auto"}) == "auto"
    with pytest.raises(ClientError) as caught:
        read_serving_config({"SSD_INFERENCE_PRECISION": "fp16", "SSD_MAX_DETECTIONS": "0"},
                            cpus=2, gpus=0)
    message = str(caught.value)
    assert "SSD_INFERENCE_PRECISION='fp16'" in message and "float32, bfloat16, int8, auto" \
        in message and "SSD_MAX_DETECTIONS" in message


def test_bfloat16_needs_the_cpu_instructions(float32_model):
    info = read_model_info(float32_model)
    with pytest.raises(ClientError, match="no avx512_bf16 or amx_bf16 instructions"):
        resolve_inference_precision("bfloat16", info, float32_model, gpus=0, bfloat16_cpu=False)
    assert resolve_inference_precision("bfloat16", info, float32_model, gpus=0,
                                       bfloat16_cpu=True) == "bfloat16"
    with pytest.raises(ClientError, match="on GPUs"):
        resolve_inference_precision("bfloat16", info, float32_model, gpus=1, bfloat16_cpu=True)


def test_int8_needs_the_int8_network_and_a_cpu(float32_model):
    info = read_model_info(float32_model)
    with pytest.raises(ClientError) as caught:
        resolve_inference_precision("int8", info, float32_model, gpus=0)
    assert "quantize=int8" in str(caught.value) and INT8_SYMBOL_FILE in str(caught.value)
    listed_only = replace(info, int8=ENTRY)  # model_info lists it, the files are missing
    with pytest.raises(ClientError, match="quantize=int8"):
        resolve_inference_precision("int8", listed_only, float32_model, gpus=0)
    info = _with_int8_files(float32_model)
    assert resolve_inference_precision("int8", info, float32_model, gpus=0) == "int8"
    with pytest.raises(ClientError, match="CPUs only"):
        resolve_inference_precision("int8", info, float32_model, gpus=1)


def test_auto_serves_int8_only_when_its_recorded_fidelity_met_both_goals(float32_model):
    plain = read_model_info(float32_model)
    assert resolve_inference_precision("auto", plain, float32_model, gpus=0,
                                       bfloat16_cpu=True) == "float32"
    good = _with_int8_files(float32_model)
    met = replace(ENTRY, fidelity_map=0.97, labels_map=0.70, float32_labels_map=0.705)
    assert resolve_inference_precision("auto", replace(good, int8=met), float32_model,
                                       gpus=0) == "int8"
    assert resolve_inference_precision("auto", replace(good, int8=met), float32_model,
                                       gpus=1) == "float32"
    for missed in (replace(met, fidelity_map=0.90),  # disagrees with float32
                   replace(met, labels_map=0.60),  # loses 0.105 mAP on the labels
                   replace(met, fidelity_map=None),  # float32 detected nothing to compare
                   replace(met, labels_map=None, float32_labels_map=None)):  # never measured
        assert resolve_inference_precision("auto", replace(good, int8=missed), float32_model,
                                           gpus=0) == "float32", missed


def _serve(base, timeout=120, prefix=(), **env):
    return subprocess.run([*prefix, sys.executable, "-m", "ssd_sagemaker", "serve"],
                          env=cli_env(base, SAGEMAKER_BIND_TO_PORT="1", **env),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # builds a full network, starts a process or collects the suite
def test_serve_refuses_int8_without_the_int8_network(tmp_path):
    export_tiny_model(tmp_path / "model")
    result = _serve(tmp_path, SSD_INFERENCE_PRECISION="int8")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-2000:]
    assert "SSD_INFERENCE_PRECISION=int8" in output and "quantize=int8" in output
    assert "Traceback" not in output and "Booting worker" not in output


@pytest.mark.skipif(cpu_has_bfloat16(), reason="this CPU has bfloat16 instructions")
def test_serve_refuses_bfloat16_on_this_cpu(tmp_path):
    export_tiny_model(tmp_path / "model")
    result = _serve(tmp_path, SSD_INFERENCE_PRECISION="bfloat16")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-2000:]
    assert "no avx512_bf16 or amx_bf16 instructions" in output
    assert "Traceback" not in output and "Booting worker" not in output


def test_a_bfloat16_worker_refuses_clearly_since_mxnet_converts_no_layer(tmp_path):
    """What a worker loads once serve accepted bfloat16: MXNet 1.9.1's AMP conversion
    (`convert_hybrid_block`, a graph pass that does not depend on the CPU) leaves the exported
    SSD's graph without a single bfloat16 cast — measured on CPUs without and with avx512_bf16
    (an AMD EPYC with avx512_bf16 gave 0 casts over 36 convolutions) — so the worker refuses
    rather than serve float32 under a bfloat16 label."""
    from serving_samples import export_untrained_model

    model_dir = export_untrained_model(tmp_path / "model")
    with pytest.raises(ClientError, match="converted no layer of the network to bfloat16"):
        Predictor(model_dir, precision="bfloat16")


@pytest.mark.slow  # boots gunicorn and a worker
def test_serve_accepts_bfloat16_where_the_cpu_reports_the_instructions(tmp_path):
    """/proc/cpuinfo with avx512_bf16 added (bind-mounted over the real one in a private mount
    namespace): the master accepts bfloat16 and the workers load the network in it; on a CPU
    that only claims the flag (and on one that has it: see above), MXNet converts nothing and
    the worker's refusal ends serve."""
    flags = tmp_path / "cpuinfo"
    real = open("/proc/cpuinfo").read()
    flags.write_text(real.replace("flags\t\t:", "flags\t\t: avx512_bf16 amx_bf16", 1))
    prefix = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /proc/cpuinfo && exec "$@"',
              str(flags)]
    probe = subprocess.run([*prefix, "grep", "-c", "avx512_bf16", "/proc/cpuinfo"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot fake /proc/cpuinfo here (unshare -m needs root): {probe.stderr}")
    export_tiny_model(tmp_path / "model")
    result = _serve(tmp_path, prefix=prefix, SSD_INFERENCE_PRECISION="bfloat16",
                    SAGEMAKER_MODEL_SERVER_WORKERS="1")
    output = result.stdout + result.stderr
    assert "no avx512_bf16 or amx_bf16" not in output  # the master accepted it
    assert "bfloat16" in output and "Booting worker" in output, output[-3000:]
    assert result.returncode == 1, output[-3000:]
    assert "converted no layer of the network to bfloat16" in output
