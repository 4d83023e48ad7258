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


def test_inference_toolkit_variables():
    """SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, ..._TIMEOUT_SECONDS and ..._LOG_LEVEL are read."""
    import logging

    environ = {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/json;verbose",
               "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS": "90",
               "SAGEMAKER_CONTAINER_LOG_LEVEL": "debug"}
    config = read_serving_config(environ, cpus=2, gpus=0)
    assert (config.default_accept, config.timeout, config.log_level) == (
        "application/json;verbose", 90, logging.DEBUG)
    assert read_serving_config({"SAGEMAKER_CONTAINER_LOG_LEVEL": "40",
                                "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30",
                                "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS": "30"},
                               cpus=1, gpus=0).log_level == logging.ERROR
    defaults = read_serving_config({}, cpus=1, gpus=0)
    assert (defaults.default_accept, defaults.timeout, defaults.log_level) == ("", 60,
                                                                               logging.INFO)


def test_bad_inference_toolkit_variables_are_named_together():
    with pytest.raises(ClientError) as error:
        read_serving_config({"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
                             "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS": "0",
                             "SAGEMAKER_CONTAINER_LOG_LEVEL": "99"}, cpus=1, gpus=0)
    message = str(error.value)
    assert "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT='text/csv' is not a response type" in message
    assert "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS='0' is not an integer from 1" in message
    assert "SAGEMAKER_CONTAINER_LOG_LEVEL='99' is not a log level" in message


def test_the_default_accept_answers_requests_without_accept_or_with_any():
    from ssd_sagemaker.serving.negotiation import (
        ResponseFormat,
        batch_line_format,
        response_format,
    )

    for accept in (None, "", "*/*"):
        assert response_format(accept, "image/png") is ResponseFormat.PNG
        assert batch_line_format(accept, "application/json;verbose") is \
            ResponseFormat.VERBOSE_JSON
    assert response_format("application/json", "image/png") is ResponseFormat.JSON
    # a batch transform's default: a single image is still answered (one JSON line)
    assert response_format(None, "application/jsonlines;verbose") is ResponseFormat.VERBOSE_JSON
    assert batch_line_format("application/jsonlines;annotation=1") is \
        ResponseFormat.ANNOTATION_JSON


def test_a_batch_under_an_image_default_accept_is_406_naming_the_variable():
    from ssd_sagemaker.serving.negotiation import batch_line_format
    from ssd_sagemaker.serving.request_errors import NotAcceptable

    with pytest.raises(NotAcceptable) as error:
        batch_line_format(None, "image/jpeg")
    assert ("Accept 'image/jpeg' (SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT: the request sent none "
            "or */*)") in error.value.message
    with pytest.raises(NotAcceptable) as error:
        batch_line_format("image/png", "image/jpeg")
    assert "Accept 'image/png'; a batch is answered with application/jsonlines" in \
        error.value.message
