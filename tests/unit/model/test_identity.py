"""One identity for checkpoints and warm starts: every differing field named with both values,
class names compared only where both sides know them, earlier descriptions still read."""

from ssd_sagemaker.model.identity import NetworkIdentity


def test_equal_identities_have_no_mismatch():
    job = NetworkIdentity.of_classes("resnet-50", 512, ("cat", "dog"))
    assert NetworkIdentity.from_json(job.to_json()) == job
    assert job.mismatches(job, "the checkpoint") == []


def test_every_mismatch_names_both_values():
    saved = NetworkIdentity.of_classes("vgg-16", 300, ("cat",))
    wanted = NetworkIdentity.of_classes("resnet-50", 512, ("cat", "dog"))
    assert saved.mismatches(wanted, "the checkpoint") == [
        "base_network: the checkpoint has 'vgg-16', the job asks for 'resnet-50'",
        "image_shape: the checkpoint has 300, the job asks for 512",
        "num_classes: the checkpoint has 1, the job asks for 2",
        "classes: the checkpoint has ['cat'], the job asks for ['cat', 'dog']"]


def test_names_unknown_on_one_side_compare_the_count_only():
    artifact = NetworkIdentity.of_classes("vgg-16", 300, ("cat", "dog"))
    assert artifact.mismatches(NetworkIdentity("vgg-16", 300, 2), "the model") == []
    assert artifact.mismatches(NetworkIdentity("vgg-16", 300, 3), "the model") == [
        "num_classes: the model has 2, the job asks for 3"]


def test_a_description_of_an_earlier_version_counts_its_classes():
    earlier = {"base_network": "vgg-16", "image_shape": 300, "classes": ["a", "b"]}
    assert NetworkIdentity.from_json(earlier) == NetworkIdentity("vgg-16", 300, 2, ("a", "b"))
