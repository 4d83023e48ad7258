"""environment.py: paths follow SAGEMAKER_BASE_DIR; config files parse; bad files say why."""

import json

import pytest

from ssd_sagemaker.environment import (ChannelConfig, Paths, ResourceConfig, paths_from_environment,
                                       read_channels, read_hyperparameters, read_resource_config,
                                       read_training_environment)
from ssd_sagemaker.errors import ClientError


def _write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))


def test_paths_default_to_opt_ml_and_follow_base_dir(tmp_path):
    assert paths_from_environment({}).model_dir.as_posix() == "/opt/ml/model"
    paths = paths_from_environment({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    assert paths.hyperparameters_file == tmp_path / "input/config/hyperparameters.json"
    assert paths.input_data_config_file == tmp_path / "input/config/inputdataconfig.json"
    assert paths.resource_config_file == tmp_path / "input/config/resourceconfig.json"
    assert paths.channel_dir("train") == tmp_path / "input/data/train"
    assert paths.model_dir == tmp_path / "model"
    assert paths.output_dir == tmp_path / "output"
    assert paths.output_data_dir == tmp_path / "output/data"
    assert paths.checkpoint_dir == tmp_path / "checkpoints"


def test_no_side_effects_creating_paths(tmp_path):
    paths = Paths(tmp_path / "ml")
    read_training_environment(paths)
    assert not (tmp_path / "ml").exists()


def test_hyperparameters_read_as_given(tmp_path):
    paths = Paths(tmp_path)
    _write(paths.hyperparameters_file, {"epochs": "3", "sagemaker_region": "\"eu-west-1\""})
    assert read_hyperparameters(paths) == {"epochs": "3", "sagemaker_region": "\"eu-west-1\""}


def test_absent_hyperparameters_file_is_empty(tmp_path):
    assert read_hyperparameters(Paths(tmp_path)) == {}


@pytest.mark.parametrize("content, fragment", [
    ("{\"epochs\": ", "not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
])
def test_bad_hyperparameters_file_names_the_file(tmp_path, content, fragment):
    paths = Paths(tmp_path)
    _write(paths.hyperparameters_file, content)
    with pytest.raises(ClientError) as error:
        read_hyperparameters(paths)
    assert fragment in str(error.value)
    assert str(paths.hyperparameters_file) in str(error.value)


def test_channels_from_inputdataconfig(tmp_path):
    paths = Paths(tmp_path)
    _write(paths.input_data_config_file, {
        "train": {"ContentType": "application/x-recordio", "TrainingInputMode": "Pipe",
                  "S3DistributionType": "ShardedByS3Key", "RecordWrapperType": "RecordIO"},
        "validation": {"ContentType": "image/jpeg"},
    })
    channels = read_channels(paths)
    assert channels["train"] == ChannelConfig("train", "application/x-recordio", "Pipe",
                                              "ShardedByS3Key", "RecordIO")
    assert channels["validation"] == ChannelConfig("validation", "image/jpeg")


def test_channels_without_config_are_the_data_folders(tmp_path):
    paths = Paths(tmp_path)
    for name in ("train", "train_annotation"):
        paths.channel_dir(name).mkdir(parents=True)
    assert sorted(read_channels(paths)) == ["train", "train_annotation"]


def test_resource_config_absent_means_one_host(tmp_path):
    resources = read_resource_config(Paths(tmp_path))
    assert resources == ResourceConfig("algo-1", ("algo-1",))
    assert resources.is_master


def test_resource_config_hosts_sorted_and_master(tmp_path):
    paths = Paths(tmp_path)
    _write(paths.resource_config_file, {"current_host": "algo-1-x7k2q",
                                        "hosts": ["algo-2-abcde", "algo-1-x7k2q"],
                                        "network_interface_name": "eth0"})
    resources = read_resource_config(paths)
    assert resources.hosts == ("algo-1-x7k2q", "algo-2-abcde")
    assert resources.is_master and resources.network_interface_name == "eth0"


def test_resource_config_current_host_must_be_listed(tmp_path):
    paths = Paths(tmp_path)
    _write(paths.resource_config_file, {"current_host": "algo-3", "hosts": ["algo-1"]})
    with pytest.raises(ClientError, match="current_host"):
        read_resource_config(paths)


def test_attribute_names_of_augmented_manifests(tmp_path):
    paths = Paths(tmp_path)
    _write(paths.input_data_config_file, {
        "train": {"ContentType": "application/x-recordio", "TrainingInputMode": "Pipe",
                  "RecordWrapperType": "RecordIO",
                  "AttributeNames": ["source-ref", "bounding-box", "bounding-box-metadata"]},
        "validation": {"ContentType": "application/x-recordio"},
    })
    channels = read_channels(paths)
    assert channels["train"].attribute_names == ("source-ref", "bounding-box",
                                                 "bounding-box-metadata")
    assert channels["validation"].attribute_names == ()


def test_attribute_names_must_be_a_list_of_names(tmp_path):
    paths = Paths(tmp_path)
    _write(paths.input_data_config_file, {"train": {"AttributeNames": "source-ref"}})
    with pytest.raises(ClientError) as error:
        read_channels(paths)
    assert "channel 'train' has AttributeNames 'source-ref'" in str(error.value)
    assert '["source-ref", "bounding-box"]' in str(error.value)
