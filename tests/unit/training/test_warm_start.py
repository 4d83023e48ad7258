"""warm_start.py: an earlier artifact (folder or model.tar.gz) warm-starts the same network;
a different network is refused naming both values."""

import tarfile

import numpy as np
import pytest

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.artifact import ModelInfo, save_artifact
from ssd_sagemaker.model.network import build_network
from ssd_sagemaker.training import warm_start


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    directory = tmp_path_factory.mktemp("artifact")
    net = build_network("vgg-16", 300, ["a", "b"])
    save_artifact(net, directory, ModelInfo(("a", "b"), 300, "vgg-16", 0.45), {})
    return directory, net


def test_folder_and_tarball_are_found_and_the_extraction_removed(artifact, tmp_path):
    directory, _ = artifact
    with warm_start.located_artifact(directory) as found:
        assert found == directory
    assert directory.is_dir()  # a channel's own folder is left alone
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as archive:
        for path in directory.iterdir():
            archive.add(path, arcname=path.name)
    with warm_start.located_artifact(tmp_path) as extracted:
        assert (extracted / "model_algo_1-0000.params").read_bytes() == \
            (directory / "model_algo_1-0000.params").read_bytes()
    assert not extracted.exists()


def test_empty_channel_is_a_client_error(tmp_path):
    with pytest.raises(ClientError, match="holds no artifact"):
        with warm_start.located_artifact(tmp_path):
            pass


def test_mismatches_name_both_values(artifact):
    directory, _ = artifact
    warm_start.check_compatible(directory, 2, "vgg-16", 300)
    with pytest.raises(ClientError) as error:
        warm_start.check_compatible(directory, 3, "resnet-50", 512)
    message = str(error.value)
    assert "num_classes: the model has 2, the job asks for 3" in message
    assert "base_network: the model has 'vgg-16', the job asks for 'resnet-50'" in message
    assert "image_shape: the model has 300, the job asks for 512" in message


def test_weights_are_loaded_into_a_new_network(artifact):
    directory, trained = artifact
    fresh = build_network("vgg-16", 300, ["a", "b"])
    warm_start.load_weights(fresh, warm_start.read_weights(directory))
    expected = {k.split("_", 1)[1]: v.data().asnumpy() for k, v in trained.collect_params().items()}
    for name, param in fresh.collect_params().items():
        np.testing.assert_array_equal(param.data().asnumpy(), expected[name.split("_", 1)[1]],
                                      err_msg=name)


def test_a_network_of_another_size_does_not_fit(artifact):
    directory, _ = artifact
    with pytest.raises(ClientError, match="does not fit the network"):
        warm_start.load_weights(build_network("vgg-16", 300, ["a", "b", "c"]),
                                warm_start.read_weights(directory))
