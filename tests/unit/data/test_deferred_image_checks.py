"""Training reads an image + JSON channel without opening its images; the loader workers check
each image as it is used: one corrupt image met late in the first epoch is left out (its slot
filled, every batch full), named, and summarised when the epoch ends; beyond the channel's 1 %
tolerance the job stops with the channel's ClientError naming them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from planting import corrupt_jpeg
from ssd_sagemaker.data.channels import TrainingData, read_training_data
from ssd_sagemaker.data.synthetic import write_annotated_channel
from ssd_sagemaker.data.transforms.presets import ValTransform
from ssd_sagemaker.environment import ChannelConfig, Paths
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.hyperparameters import parse_hyperparameters

IMAGES, BATCH = 150, 10
UNDECODABLE = ("image is a corrupt JPEG: its image data cannot be decoded (libjpeg-turbo: Could "
               "not determine subsampling level of JPEG image)")


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    paths = Paths(tmp_path_factory.mktemp("job"))
    write_annotated_channel(paths.channel_dir("train"), paths.channel_dir("train_annotation"),
                            IMAGES, seed=5)
    return paths


def _read(paths: Paths) -> TrainingData:
    channels = {name: ChannelConfig(name, "image/jpeg") for name in ("train", "train_annotation")}
    hp = parse_hyperparameters({"num_classes": "3", "num_training_samples": str(IMAGES)})
    data = read_training_data(paths, channels, hp)
    data.workers = 1
    return data


def _late(data: TrainingData, count: int) -> list[str]:
    """Origins of `count` samples of the first epoch's last batch (its order is seeded)."""
    order = [sample.origin for sample in data.epoch_samples(0, BATCH)]
    return order[-count:]


def _corrupt(paths: Paths, origins: list[str]) -> dict[Path, bytes]:
    kept = {}
    for origin in origins:
        path = paths.data_dir / origin
        kept[path] = path.read_bytes()
        path.write_bytes(corrupt_jpeg())
    return kept


def test_a_corrupt_image_met_late_is_left_out_named_and_summarised(channel: Paths,
                                                                    caplog) -> None:
    data = _read(channel)
    (late,) = _late(data, 1)
    kept = _corrupt(channel, [late])  # after the channel was read: training never opened it
    try:
        with caplog.at_level(logging.INFO):
            batches = [batch[0].shape for batch in
                       data.train_batches(0, ValTransform(128), BATCH)]
    finally:
        data.close()
        for path, body in kept.items():
            path.write_bytes(body)
    assert batches == [(BATCH, 3, 128, 128)] * (IMAGES // BATCH)  # every batch full
    assert data.train.refusals is not None
    assert data.train.refusals.late == {late: UNDECODABLE}
    messages = caplog.messages
    assert f"train: {late}: {UNDECODABLE}; left out" in messages
    assert messages[-1] == (f"train: first pass done: 1 image(s) refused while loading and left "
                            f"out (1 invalid example(s) of {IMAGES} in all; at most 1% are "
                            f"tolerated): {late}: {UNDECODABLE}")


def test_corrupt_images_beyond_the_tolerance_stop_the_job_naming_them(channel: Paths) -> None:
    data = _read(channel)
    late = _late(data, 2)  # 2 of 150 > 1 %
    kept = _corrupt(channel, late)
    try:
        with pytest.raises(ClientError) as caught:
            list(data.train_batches(0, ValTransform(128), BATCH))
    finally:
        data.close()
        for path, body in kept.items():
            path.write_bytes(body)
    lines = str(caught.value).splitlines()
    assert lines[0] == (f"The train channel has 2 invalid example(s) of {IMAGES} (at most 1% "
                        f"are tolerated); fix or remove them:")
    assert sorted(lines[1:3]) == sorted(f"  {origin}: {UNDECODABLE}" for origin in late)
    assert lines[3] == (f"train (image + JSON): {IMAGES} found, {IMAGES - 2} used, 0 skipped, "
                        f"2 with errors")
