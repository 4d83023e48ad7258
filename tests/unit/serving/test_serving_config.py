"""config.py: defaults (one worker per CPU, or per GPU; cores shared between workers; the
built-in's payload limit), and every bad variable named at once."""

import pytest

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.serving.config import (
    DEFAULT_MAX_IMAGE_PIXELS,
    DetectionLimits,
    ServingConfig,
    gpu_count,
    read_request_limits,
    read_serving_config,
)


def test_defaults_on_a_cpu_host():
    config = read_serving_config({}, cpus=4, gpus=0)
    assert config == ServingConfig(port=8080, workers=4, timeout=60, max_payload_mb=6,
                                   max_image_pixels=40_000_000, limits=DetectionLimits(0.0, 100),
                                   omp_threads=1)
    assert config.bind == "0.0.0.0:8080"
    assert config.max_payload_bytes == 6 * 1024 * 1024


def test_one_worker_per_gpu_sharing_the_cpus():
    config = read_serving_config({}, cpus=8, gpus=2)
    assert (config.workers, config.omp_threads) == (2, 4)


def test_environment_overrides():
    config = read_serving_config({
        "SAGEMAKER_BIND_TO_PORT": "9000", "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20",
        "SSD_MAX_IMAGE_PIXELS": "1000000", "SSD_SCORE_THRESHOLD": "0.25",
        "SSD_MAX_DETECTIONS": "7"}, cpus=2, gpus=0)
    assert config == ServingConfig(port=9000, workers=1, timeout=30, max_payload_mb=20,
                                   max_image_pixels=1_000_000,
                                   limits=DetectionLimits(0.25, 7), omp_threads=2)


def test_user_set_openmp_threads_are_kept():
    assert read_serving_config({"OMP_NUM_THREADS": "3"}, cpus=2, gpus=0).omp_threads == 3


def test_payload_zero_means_the_largest_limit():
    assert read_serving_config({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "0"}, cpus=1, gpus=0
                               ).max_payload_mb == 100


def test_every_bad_variable_is_named_at_once():
    with pytest.raises(ClientError) as error:
        read_serving_config({"SAGEMAKER_BIND_TO_PORT": "http",
                             "SAGEMAKER_MODEL_SERVER_WORKERS": "0",
                             "SAGEMAKER_MAX_PAYLOAD_IN_MB": "101", "SSD_SCORE_THRESHOLD": "high",
                             "SSD_MAX_DETECTIONS": "-1", "SSD_MAX_IMAGE_PIXELS": "1e6"},
                            cpus=2, gpus=0)
    message = str(error.value)
    for culprit in ("SAGEMAKER_BIND_TO_PORT='http'", "SAGEMAKER_MODEL_SERVER_WORKERS='0'",
                    "SAGEMAKER_MAX_PAYLOAD_IN_MB='101'", "SSD_SCORE_THRESHOLD='high'",
                    "SSD_MAX_DETECTIONS='-1'", "SSD_MAX_IMAGE_PIXELS='1e6'"):
        assert culprit in message


def test_request_limits_alone():
    """What `predict` shares with the endpoint, read from the same variables."""
    assert read_request_limits({}) == (DEFAULT_MAX_IMAGE_PIXELS, DetectionLimits())
    assert read_request_limits({"SSD_SCORE_THRESHOLD": "0.5", "SSD_MAX_IMAGE_PIXELS": "9"}) == \
        (9, DetectionLimits(0.5, 100))
    with pytest.raises(ClientError) as error:
        read_request_limits({"SSD_MAX_DETECTIONS": "many", "SSD_MAX_IMAGE_PIXELS": "0"})
    assert "SSD_MAX_DETECTIONS='many'" in str(error.value)
    assert "SSD_MAX_IMAGE_PIXELS='0'" in str(error.value)


@pytest.mark.parametrize("visible,expected", [("0,1", 2), ("3", 1), ("", 0), ("-1", 0)])
def test_gpus_are_counted_from_cuda_visible_devices(visible, expected):
    assert gpu_count({"CUDA_VISIBLE_DEVICES": visible}) == expected


def test_multi_model_mode_and_its_memory_cap():
    assert not read_serving_config({}, cpus=2, gpus=0).multi_model
    config = read_serving_config({"SAGEMAKER_MULTI_MODEL": "TRUE",
                                  "SSD_MME_MEMORY_LIMIT_MB": "2048"}, cpus=2, gpus=0)
    assert (config.multi_model, config.memory_limit_mb) == (True, 2048)
    with pytest.raises(ClientError) as error:
        read_serving_config({"SAGEMAKER_MULTI_MODEL": "yes", "SSD_MME_MEMORY_LIMIT_MB": "0"},
                            cpus=2, gpus=0)
    assert "SAGEMAKER_MULTI_MODEL='yes' is not one of true, false" in str(error.value)
    assert "SSD_MME_MEMORY_LIMIT_MB='0' is not a number of megabytes above 0" in str(error.value)
