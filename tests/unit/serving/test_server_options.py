"""server.py: gunicorn settings (sync workers, no preload, SageMaker's knobs), device slots
for replaced workers, and a worker that cannot load the model stopping the server with its
reason."""

import os

import pytest
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.artifact import PARAMS_FILE
from ssd_sagemaker.serving.config import ServingConfig
from ssd_sagemaker.serving.model_server import ModelServer, free_device_slot, gunicorn_options
from ssd_sagemaker.serving.server import serve
from ssd_sagemaker.serving.worker import ServingWorker


def test_gunicorn_options_follow_the_configuration():
    options = gunicorn_options(ServingConfig(port=9001, workers=3, timeout=45))
    assert options["bind"] == "0.0.0.0:9001"
    assert options["workers"] == 3 and options["timeout"] == 45
    assert options["preload_app"] is False
    assert options["worker_class"] is ServingWorker
    assert options["graceful_timeout"] < 30  # SageMaker kills 30 s after SIGTERM


def test_gunicorn_accepts_every_option(tmp_path):
    server = ModelServer(tmp_path, ServingConfig(workers=2), tmp_path / "failure")
    assert server.cfg.workers == 2 and server.cfg.worker_class is ServingWorker
    assert server.cfg.preload_app is False
    assert (server.cfg.limit_request_line, server.cfg.limit_request_fields,
            server.cfg.limit_request_field_size) == (4094, 100, 8190)  # the documented limits


@pytest.mark.parametrize("used,expected", [(set(), 0), ({0}, 1), ({0, 1, 3}, 2), ({1}, 0)])
def test_a_new_worker_takes_the_lowest_free_device_slot(used, expected):
    assert free_device_slot(used) == expected


def test_a_worker_that_cannot_load_the_model_reports_why_and_exits_as_a_boot_error(tmp_path):
    failure = tmp_path / "failure"
    server = ModelServer(tmp_path / "no-model", ServingConfig(), failure)
    with pytest.raises(SystemExit) as stop:
        server.load()
    assert stop.value.code == Arbiter.WORKER_BOOT_ERROR
    assert f"The model folder {tmp_path / 'no-model'} does not exist" in failure.read_text()


@pytest.mark.parametrize("stop", [SystemExit(Arbiter.WORKER_BOOT_ERROR),
                                  HaltServer("Worker failed to boot.", Arbiter.WORKER_BOOT_ERROR)])
def test_serve_turns_a_worker_boot_failure_into_the_workers_reason(model_dir, monkeypatch, stop):
    """However gunicorn's master stops (it exits, or a second failing worker makes HaltServer
    escape while it halts), `serve` raises the ClientError the worker reported."""
    def fail_to_boot(server):
        server._boot_failure_file.write_text(f"{PARAMS_FILE} cannot be loaded")
        raise stop

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # serve sets it; restored after the test
    monkeypatch.setattr(ModelServer, "run", fail_to_boot)
    with pytest.raises(ClientError, match=f"{PARAMS_FILE} cannot be loaded"):
        serve(model_dir, {})


@pytest.mark.parametrize("given, expected", [(None, "0"), ("2", "2")])
def test_serve_turns_cudnn_autotuning_off_unless_set(model_dir, monkeypatch, given, expected):
    seen = {}

    def record(server):
        seen["autotune"] = os.environ.get("MXNET_CUDNN_AUTOTUNE_DEFAULT")

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    if given is None:
        monkeypatch.delenv("MXNET_CUDNN_AUTOTUNE_DEFAULT", raising=False)
    else:
        monkeypatch.setenv("MXNET_CUDNN_AUTOTUNE_DEFAULT", given)
    monkeypatch.setattr(ModelServer, "run", record)
    serve(model_dir, {})
    assert seen == {"autotune": expected}
