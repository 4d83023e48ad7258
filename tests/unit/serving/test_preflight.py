"""preflight.py: the master refuses an artifact it cannot serve, naming the file and the
problem, without loading the network."""

import shutil

import mxnet as mx
import pytest

from serving_samples import CLASSES
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.artifact import MODEL_INFO_FILE, PARAMS_FILE, SYMBOL_FILE
from ssd_sagemaker.serving.preflight import check_artifact, check_params_file


@pytest.fixture
def copy(model_dir, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    return target


def test_a_complete_artifact_passes(model_dir):
    assert check_artifact(model_dir).classes == CLASSES


@pytest.mark.parametrize("size", [0, 10, 20, 1000, 50_000_000])
def test_a_truncated_params_file_is_named(copy, size):
    params = copy / PARAMS_FILE
    params.write_bytes(params.read_bytes()[:size])
    with pytest.raises(ClientError) as error:
        check_artifact(copy)
    assert str(params) in str(error.value)
    assert ("truncated" if size >= 16 else "not an MXNet parameters file") in str(error.value)


def test_a_params_file_of_another_kind_is_named(copy):
    (copy / PARAMS_FILE).write_bytes(b"PK\x03\x04 a zip, e.g. a PyTorch checkpoint" * 10)
    with pytest.raises(ClientError, match="not an MXNet parameters file") as error:
        check_artifact(copy)
    assert PARAMS_FILE in str(error.value)


def test_any_complete_ndarray_list_passes(tmp_path):
    """What MXNet itself writes, whatever the shapes and dtypes, is accepted."""
    path = tmp_path / "other.params"
    mx.nd.save(str(path), {"arg:w": mx.nd.ones((3, 4)), "aux:s": mx.nd.array([2.0]),
                           "arg:h": mx.nd.zeros((2, 1, 3, 3), dtype="float16"),
                           "arg:i": mx.nd.ones((2,), dtype="int64")})
    check_params_file(path)


@pytest.mark.parametrize("text,problem", [("{not json", "not JSON"),
                                          ('{"nodes": []}', "no 'nodes' and 'heads'"),
                                          ("[1, 2]", "no 'nodes' and 'heads'")])
def test_a_broken_symbol_file_is_named(copy, text, problem):
    (copy / SYMBOL_FILE).write_text(text)
    with pytest.raises(ClientError) as error:
        check_artifact(copy)
    assert SYMBOL_FILE in str(error.value) and problem in str(error.value)


def test_missing_files_are_named(copy):
    (copy / PARAMS_FILE).unlink()
    (copy / MODEL_INFO_FILE).unlink()
    with pytest.raises(ClientError) as error:
        check_artifact(copy)
    assert PARAMS_FILE in str(error.value) and MODEL_INFO_FILE in str(error.value)
