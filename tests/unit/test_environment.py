"""environment.py: paths follow SAGEMAKER_BASE_DIR; config files parse; bad files say why."""

import json
import os

import pytest

from deadline import deadline
from ssd_sagemaker.environment import (
    MAX_CONFIG_BYTES,
    ChannelConfig,
    Paths,
    ResourceConfig,
    TrainingSettings,
    paths_from_environment,
    read_channels,
    read_hyperparameters,
    read_resource_config,
    read_training_settings,
)
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


# --- hostile config files: a ClientError naming the file and what is wrong ------------------
HOSTILE_FILES = {
    "latin-1": ('{"num_classes": "3", "note": "café"}'.encode("latin-1"),
                "is not UTF-8 text: byte 0xe9 at offset 33"),
    "utf-16": ('{"num_classes": "3"}'.encode("utf-16"), "is UTF-16 text"),
    "utf-32": ('{"num_classes": "3"}'.encode("utf-32"), "is UTF-32 text"),
    "utf-16-without-bom": ('{"num_classes": "3"}'.encode("utf-16-le"),
                           "holds a NUL byte at offset 1 (UTF-16 or UTF-32 text without a byte "
                           "order mark?)"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "is nested more than 32 levels deep"),
    "deep-object": (b'{"a":' * 40 + b"1" + b"}" * 40, "is nested more than 32 levels deep"),
    "5000-digit": (b'{"num_classes": ' + b"1" * 5000 + b"}",
                   "holds an integer of more than 4300 digits, too large"),
    "400-digit": (b'{"x": [' + b"9" * 400 + b"]}", "(400 digits), too large"),
    "1e400": (b'{"x": 1e400}', "holds a number too large for a 64-bit float"),
    "NaN": (b'{"x": NaN}', "holds NaN, which is not JSON"),
    "surrogate": (b'{"\\udead": "1"}', "holds the string '\\udead' with a lone surrogate"),
    "truncated": (b'{"epochs": ', "is not valid JSON: Expecting value at line 1, column 12"),
}
CONFIG_FILES = {"hyperparameters": (lambda p: p.hyperparameters_file, read_hyperparameters),
                "input data config": (lambda p: p.input_data_config_file, read_channels),
                "resource config": (lambda p: p.resource_config_file, read_resource_config)}


@pytest.mark.parametrize("what", sorted(CONFIG_FILES))
@pytest.mark.parametrize("case", sorted(HOSTILE_FILES))
def test_hostile_config_file_is_a_client_error_naming_file_and_fault(tmp_path, what, case):
    data, fragment = HOSTILE_FILES[case]
    file_of, read = CONFIG_FILES[what]
    paths = Paths(tmp_path)
    file_of(paths).parent.mkdir(parents=True)
    file_of(paths).write_bytes(data)
    with pytest.raises(ClientError) as error:
        read(paths)
    assert str(error.value).startswith(f"The {what} file {file_of(paths)} ")
    assert fragment in str(error.value)


SPECIAL_FILES = {
    "fifo": (lambda path: os.mkfifo(path), "is a FIFO (named pipe), not a regular file"),
    "device": (lambda path: path.symlink_to("/dev/null"),
               "is a character device, not a regular file"),
    "folder": (lambda path: path.mkdir(), "is a directory, not a regular file"),
    "2 MB": (lambda path: path.write_bytes(b'{"x": "' + b"y" * 2_000_000 + b'"}'),
             "is 2,000,009 bytes, over the limit of 1,000,000 bytes: a job's config is a few "
             "kilobytes (SageMaker allows 100 hyperparameters)"),
}


@pytest.mark.parametrize("what", sorted(CONFIG_FILES))
@pytest.mark.parametrize("case", sorted(SPECIAL_FILES))
def test_config_file_that_is_not_a_small_regular_file_is_refused_unopened(tmp_path, what, case):
    """A FIFO used to block `train` in open() until MaxRuntimeInSeconds; /dev/zero or a huge
    file to be read whole (1 million keys: 2 minutes, 930 MB)."""
    make, fragment = SPECIAL_FILES[case]
    file_of, read = CONFIG_FILES[what]
    paths = Paths(tmp_path)
    file_of(paths).parent.mkdir(parents=True)
    make(file_of(paths))
    with deadline(10), pytest.raises(ClientError) as error:
        read(paths)
    assert str(error.value).startswith(f"The {what} file {file_of(paths)} {fragment}")


def test_a_config_file_at_the_bound_is_read(tmp_path):
    paths = Paths(tmp_path)
    document = b'{"epochs": "3", "x": "' + b"y" * (MAX_CONFIG_BYTES - 24) + b'"}'
    assert len(document) == MAX_CONFIG_BYTES
    _write(paths.hyperparameters_file, document.decode())
    assert read_hyperparameters(paths)["epochs"] == "3"


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    paths = Paths(tmp_path)
    _write(paths.hyperparameters_file, "")
    paths.hyperparameters_file.write_bytes(b"\xef\xbb\xbf" + json.dumps({"epochs": "3"}).encode())
    assert read_hyperparameters(paths) == {"epochs": "3"}


@pytest.mark.parametrize("name", ["..", ".", "train/../..", "train data", "x" * 65, "",
                                  "a\x00b", "trainé"])
def test_channel_names_must_be_sagemaker_channel_names(tmp_path, name):
    paths = Paths(tmp_path)
    _write(paths.input_data_config_file, {name: {"ContentType": "image/jpeg"}})
    with pytest.raises(ClientError) as error:
        read_channels(paths)
    assert f"{paths.input_data_config_file}: the channel name " in str(error.value)
    assert "is not a SageMaker channel name (1-64 letters, digits" in str(error.value)


@pytest.mark.parametrize("entry, fragment", [
    (5, "channel 'train' must be a JSON object such as {\"ContentType\": \"image/jpeg\"}, not 5"),
    ({"ContentType": [[["x"]]]},
     "channel 'train' has ContentType [[[\"x\"]]]; it must be a string"),
    ({"TrainingInputMode": 1}, "channel 'train' has TrainingInputMode 1; it must be a string"),
    ({"AttributeNames": ["a", 1]}, "channel 'train' has AttributeNames [\"a\", 1]; it must be"),
])
def test_channel_fields_of_the_wrong_type_name_channel_and_key(tmp_path, entry, fragment):
    paths = Paths(tmp_path)
    _write(paths.input_data_config_file, {"train": entry})
    with pytest.raises(ClientError) as error:
        read_channels(paths)
    assert f"{paths.input_data_config_file}: {fragment}" in str(error.value)


@pytest.mark.parametrize("config, fragment", [
    ({"current_host": 1, "hosts": [1, 2]}, "the host 1 is not a host name"),
    ({"current_host": "a b", "hosts": ["a b"]}, "the host 'a b' is not a host name"),
    ({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": ["eth0"]},
     "network_interface_name must be a string such as 'eth0', not [\"eth0\"]"),
    ({"current_host": "algo-1", "hosts": ["x" * 5000]}, "got hosts=[\"xxxxx"),
])
def test_resource_config_values_are_checked(tmp_path, config, fragment):
    paths = Paths(tmp_path)
    _write(paths.resource_config_file, config)
    with pytest.raises(ClientError) as error:
        read_resource_config(paths)
    assert str(paths.resource_config_file) in str(error.value)
    assert fragment in str(error.value) and len(str(error.value)) < 400


def test_training_settings_default_when_unset():
    assert read_training_settings({}) == TrainingSettings(
        progress_style="auto", in_training_job=False, progress_timeout=1800.0,
        scheduler_port=8000, resolve_timeout=300.0, join_timeout=600.0)


def test_training_settings_from_the_variables():
    settings = read_training_settings({
        "SSD_PROGRESS": " Lines ", "TRAINING_JOB_NAME": "job-1", "SSD_PROGRESS_TIMEOUT": "2.5",
        "SSD_SCHEDULER_PORT": "9123", "SSD_HOST_RESOLVE_TIMEOUT": "0", "SSD_JOIN_TIMEOUT": "5"})
    assert settings == TrainingSettings("lines", True, 2.5, 9123, 0.0, 5.0)


@pytest.mark.parametrize("variable, value, fragment", [
    ("SSD_SCHEDULER_PORT", "http", "SSD_SCHEDULER_PORT='http' is not a TCP port (1-65534)."),
    ("SSD_SCHEDULER_PORT", "65535", "SSD_SCHEDULER_PORT='65535' is not a TCP port"),
    ("SSD_HOST_RESOLVE_TIMEOUT", "soon", "SSD_HOST_RESOLVE_TIMEOUT='soon' is not a number of "
                                         "seconds from 0 (default 300)."),
    ("SSD_JOIN_TIMEOUT", "-1", "SSD_JOIN_TIMEOUT='-1' is not a number of seconds from 0"),
    ("SSD_JOIN_TIMEOUT", "nan", "SSD_JOIN_TIMEOUT='nan'"),
    ("SSD_PROGRESS_TIMEOUT", "inf", "SSD_PROGRESS_TIMEOUT='inf' is not a number of seconds "
                                    "above 0 (default 1800)."),
    ("SSD_PROGRESS", "spinner", "SSD_PROGRESS='spinner' is not one of auto, bar, lines (bar: "),
])
def test_a_bad_training_variable_is_named(variable, value, fragment):
    with pytest.raises(ClientError) as error:
        read_training_settings({variable: value})
    assert str(error.value).startswith(f"Invalid training environment: {fragment}")


def test_every_bad_training_variable_is_named_at_once():
    with pytest.raises(ClientError) as error:
        read_training_settings({"SSD_PROGRESS": "spinner", "SSD_PROGRESS_TIMEOUT": "soon",
                                "SSD_SCHEDULER_PORT": "http", "SSD_HOST_RESOLVE_TIMEOUT": "-1",
                                "SSD_JOIN_TIMEOUT": "later"})
    message = str(error.value)
    assert message.startswith("Invalid training environment: SSD_PROGRESS='spinner'")
    for named in ("SSD_PROGRESS_TIMEOUT='soon'", "SSD_SCHEDULER_PORT='http'",
                  "SSD_HOST_RESOLVE_TIMEOUT='-1'", "SSD_JOIN_TIMEOUT='later'"):
        assert named in message


def _instance_group(name, instance_type, hosts):
    return {"instance_group_name": name, "instance_type": instance_type, "hosts": hosts}


def test_heterogeneous_cluster_is_refused_naming_its_groups(tmp_path):
    """SageMaker's heterogeneous-cluster resourceconfig.json (two instance groups)."""
    paths = Paths(tmp_path)
    _write(paths.resource_config_file, {
        "current_host": "algo-1", "current_instance_type": "ml.c5.xlarge",
        "current_group_name": "cpus", "hosts": ["algo-1", "algo-2", "algo-3"],
        "instance_groups": [_instance_group("gpus", "ml.p3.2xlarge", ["algo-2", "algo-3"]),
                            _instance_group("cpus", "ml.c5.xlarge", ["algo-1"])]})
    with pytest.raises(ClientError) as error:
        read_resource_config(paths)
    message = str(error.value)
    assert message.startswith(f"{paths.resource_config_file}: a heterogeneous cluster of 2 "
                              f"instance groups")
    assert "'gpus' ('ml.p3.2xlarge': [\"algo-2\", \"algo-3\"])" in message
    assert "'cpus' ('ml.c5.xlarge': [\"algo-1\"])" in message
    assert "train on one instance group" in message


def test_heterogeneous_cluster_of_many_odd_groups_gets_a_bounded_message(tmp_path):
    paths = Paths(tmp_path)
    groups = [_instance_group(f"g{i}", "ml.m5.large", [f"algo-{i}"]) for i in range(30)]
    _write(paths.resource_config_file, {"current_host": "algo-1", "hosts": ["algo-1"],
                                        "instance_groups": groups + [7, {"hosts": 3}]})
    with pytest.raises(ClientError) as error:
        read_resource_config(paths)
    assert "of 32 instance groups" in str(error.value) and "and 22 more" in str(error.value)
    assert len(str(error.value)) < 1000


def test_one_instance_group_is_an_ordinary_cluster(tmp_path):
    """Every job's resourceconfig.json now names one group, `homogeneousCluster`."""
    paths = Paths(tmp_path)
    _write(paths.resource_config_file, {
        "current_host": "algo-2", "hosts": ["algo-2", "algo-1"],
        "instance_groups": [_instance_group("homogeneousCluster", "ml.c5.xlarge",
                                            ["algo-1", "algo-2"])]})
    assert read_resource_config(paths) == ResourceConfig("algo-2", ("algo-1", "algo-2"))
