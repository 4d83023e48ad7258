"""Channels → TrainingData for every format and input mode: what is refused (with what to send
instead), class names and counts, full batches each epoch, and the same number of batches on
every worker whatever the distribution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anchor_grid import anchors
from planting import (
    image_records,
    manifest_records,
    sharded_by_key_layout,
    start_pipe_writer,
    stream_bytes,
    write_records,
)
from ssd_sagemaker.data.channels import channel_format, read_training_data
from ssd_sagemaker.data.loading.sharding import Shard, samples_per_epoch, split
from ssd_sagemaker.data.synthetic import write_annotated_channel
from ssd_sagemaker.data.transforms.presets import TrainTransform, ValTransform
from ssd_sagemaker.environment import ChannelConfig, Paths
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.hyperparameters import parse_hyperparameters

MANIFEST = ("source-ref", "bounding-box", "bounding-box-metadata")


def _hp(samples: int = 4, **extra: str):
    return parse_hyperparameters({"num_classes": "3", "num_training_samples": str(samples),
                                  **extra})


def _image_channels(paths: Paths, train: int = 4, validation: int = 2) -> dict:
    channels = {}
    for name, count in (("train", train), ("validation", validation)):
        if count:
            write_annotated_channel(paths.channel_dir(name),
                                    paths.channel_dir(f"{name}_annotation"), count, seed=count)
            channels[name] = ChannelConfig(name, "image/jpeg")
            channels[f"{name}_annotation"] = ChannelConfig(f"{name}_annotation", "image/jpeg")
    return channels


@pytest.mark.parametrize("config, others, expected", [
    (ChannelConfig("train", "image/jpeg", "Pipe"), ("train_annotation",),
     "image + JSON channels need File mode"),
    (ChannelConfig("train", "image/png"), (), "the 'train_annotation' channel with one JSON "
                                              "annotation per image is required"),
    (ChannelConfig("train", "text/csv"), (), "ContentType 'text/csv', which this algorithm "
                                             "cannot read; send application/x-recordio"),
    (ChannelConfig("train", "application/x-recordio", attribute_names=MANIFEST), (),
     "with RecordWrapperType=None; set RecordWrapperType=RecordIO"),
])
def test_unreadable_declarations_say_what_to_send(config: ChannelConfig, others: tuple,
                                                   expected: str) -> None:
    channels = {"train": config, **{name: ChannelConfig(name) for name in others}}
    with pytest.raises(ClientError) as caught:
        channel_format(channels, "train")
    assert expected in str(caught.value)


def test_image_json_channels(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    data = read_training_data(paths, _image_channels(paths, 5, 3), _hp(5))
    data.workers = 0
    assert data.class_names == {0: "circle", 1: "square", 2: "triangle"}
    assert data.num_train_images == 5 and data.has_validation
    batches = data.train_batches(0, TrainTransform(300, anchors()), 2)
    assert len(batches) == 3  # 5 images → 3 full batches, the last completed by a repeat
    assert [b[0].shape[0] for b in batches] == [2, 2, 2]
    labels = [label.asnumpy() for _, label in data.validation_batches(ValTransform(300), 2)]
    assert sum(len(image_labels) for image_labels in labels) == 3


def test_recordio_file_channels(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    write_records(paths.channel_dir("train") / "train.rec", image_records(4))
    write_records(paths.channel_dir("validation") / "val.rec", image_records(2, seed=5),
                  index=False)
    channels = {name: ChannelConfig(name, "application/x-recordio")
                for name in ("train", "validation")}
    data = read_training_data(paths, channels, _hp(4))
    data.workers = 0
    assert data.num_train_images == 4 and data.class_names == {}
    assert len(list(data.train_batches(0, TrainTransform(300, anchors()), 2))) == 2
    (images, labels), = list(data.validation_batches(ValTransform(300), 2))
    np.testing.assert_allclose(labels.asnumpy()[:, 0, :5],
                               [[75, 75, 225, 225, 0], [75, 75, 225, 225, 1]], rtol=1e-5)


def test_manifest_file_channel(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    write_records(paths.channel_dir("train") / "train.manifest.rec", manifest_records(3),
                  index=False)
    channels = {"train": ChannelConfig("train", "application/x-recordio", "File",
                                       record_wrapper="RecordIO", attribute_names=MANIFEST)}
    data = read_training_data(paths, channels, _hp(3))
    assert data.class_names == {0: "circle", 1: "square", 2: "triangle"}
    assert data.num_train_images == 3 and not data.has_validation


def test_pipe_channels(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    paths.data_dir.mkdir(parents=True)
    writers = [start_pipe_writer(paths.data_dir, "train", [stream_bytes(image_records(5))] * 2),
               start_pipe_writer(paths.data_dir, "validation",
                                 [stream_bytes(manifest_records(2))] * 2)]
    try:
        channels = {
            "train": ChannelConfig("train", "application/x-recordio", "Pipe"),
            "validation": ChannelConfig("validation", "application/x-recordio", "Pipe",
                                        record_wrapper="RecordIO", attribute_names=MANIFEST)}
        data = read_training_data(paths, channels, _hp(5))
        data.workers = 0
        assert data.num_train_images == 5  # declared: a stream is not counted in advance
        assert data.class_names == {0: "circle", 1: "square"}
        for epoch in range(2):
            batches = list(data.train_batches(epoch, TrainTransform(300, anchors()), 2))
            assert [b[0].shape[0] for b in batches] == [2, 2, 2]
            assert sum(len(b[0]) for b in data.validation_batches(ValTransform(300), 2)) == 2
    finally:
        for writer in writers:
            writer.kill()
            writer.wait()


def test_too_many_invalid_examples_stop_training(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    channels = _image_channels(paths, 3, 0)
    (paths.channel_dir("train_annotation") / "train_0000.json").write_text("{")
    with pytest.raises(ClientError) as caught:
        read_training_data(paths, channels, _hp(3))
    assert "train_annotation/train_0000.json: is not valid JSON" in str(caught.value)


def test_shards_are_disjoint_and_cover_the_data() -> None:
    items = list(range(7))
    parts = [split(items, Shard(i, 3), "FullyReplicated") for i in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert split(items, Shard(1, 3), "ShardedByS3Key") == items  # SageMaker split it already


@pytest.mark.parametrize("distribution, local, total, expected", [
    ("FullyReplicated", 3, 5, 4),   # ceil(5 / 2) = 3 → 2 batches of 2
    ("FullyReplicated", 2, 5, 4),
    ("ShardedByS3Key", 1, None, 6),  # ceil(10 declared / 2) = 5 → 3 batches
    ("ShardedByS3Key", 9, None, 6),
    ("FullyReplicated", None, None, 6),  # Pipe mode: the declared count
])
def test_every_worker_runs_the_same_number_of_batches(distribution: str, local, total,
                                                      expected: int) -> None:
    assert samples_per_epoch(Shard(0, 2), distribution, 2, 10, local, total) == expected
    assert samples_per_epoch(Shard(1, 2), distribution, 2, 10, local, total) == expected


def test_sharded_training_data_has_equal_batches(tmp_path: Path) -> None:
    """Two workers: ShardedByS3Key gave them 2 and 5 images; both run 3 batches of 2."""
    counts = []
    for index, images in enumerate((2, 5)):
        paths = Paths(tmp_path / f"worker{index}")
        channels = _image_channels(paths, images, 0)
        channels["train"] = ChannelConfig("train", "image/jpeg", distribution="ShardedByS3Key")
        data = read_training_data(paths, channels, _hp(10), Shard(index, 2))
        data.workers = 0
        counts.append(len(data.train_batches(0, None, 2)))
    assert counts == [3, 3]


def test_single_worker_uses_every_sample_each_epoch(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    data = read_training_data(paths, _image_channels(paths, 5, 0), _hp(5))
    rng = np.random.default_rng(0)
    epoch = list(data.train.training_pass(data.samples_per_epoch(2), 2, rng))
    assert len(epoch) == 6 and {s.origin for s in epoch} == {s.origin for s in data.train.samples}


def test_pipe_stream_shorter_than_declared_warns_with_the_schedule_effect(tmp_path: Path,
                                                                         caplog) -> None:
    """100 declared, 6 streamed: the learning-rate step planned after 50 updates (epoch 1)
    would come after 16.7 epochs, i.e. never within 10 epochs; the first pass says so."""
    from functools import partial

    from plans import optimization
    from ssd_sagemaker.training.schedule import warn_stream_count

    paths = Paths(tmp_path)
    paths.data_dir.mkdir(parents=True)
    writer = start_pipe_writer(paths.data_dir, "train", [stream_bytes(image_records(6))] * 2)
    try:
        hp = _hp(100, mini_batch_size="2", lr_scheduler_step="1", epochs="10")
        channels = {"train": ChannelConfig("train", "application/x-recordio", "Pipe")}
        data = read_training_data(paths, channels, hp)
        data.watch_stream_count(partial(warn_stream_count, optimization(hp)))
        for epoch in range(2):
            rng = np.random.default_rng(epoch)
            assert len(list(data.train.training_pass(data.samples_per_epoch(2), 2, rng))) == 6
    finally:
        writer.kill()
        writer.wait()
    warnings = [r.getMessage() for r in caplog.records if "num_training_samples=100" in
                r.getMessage()]
    assert warnings == [
        "num_training_samples=100 but the Pipe-mode stream train_0 held 6 samples: an epoch is "
        "3 updates of mini_batch_size=2, not the 50 the schedule was planned with; the "
        "learning-rate step planned after epoch 1 (update 50) comes after 16.7 epochs, i.e. "
        "never within epochs=10. Set num_training_samples=6."]  # once, after the first pass


def test_class_names_found_while_streaming_reach_the_export(tmp_path: Path) -> None:
    """A Pipe-mode manifest naming 'triangle' first on line 34, after the start-up peek of
    32 lines: the names exported are those of the whole stream, not class_2."""
    import json

    from planting import jpeg
    from ssd_sagemaker.data.loading.pipe import PEEK
    from ssd_sagemaker.training.export import class_names, exported_classes

    names = ["circle", "square", "triangle"]
    records = []
    for line in range(40):
        class_id = 2 if line >= PEEK + 2 else line % 2
        records += [jpeg(80, 60, seed=line),
                    json.dumps({"image_size": [{"width": 80, "height": 60, "depth": 3}],
                                "annotations": [{"class_id": class_id, "left": 20, "top": 15,
                                                 "width": 40, "height": 30}]}).encode(),
                    json.dumps({"class-map": {str(class_id): names[class_id]}}).encode()]
    paths = Paths(tmp_path)
    paths.data_dir.mkdir(parents=True)
    writer = start_pipe_writer(paths.data_dir, "train", [stream_bytes(records)])
    try:
        channels = {"train": ChannelConfig("train", "application/x-recordio", "Pipe",
                                           record_wrapper="RecordIO", attribute_names=MANIFEST)}
        data = read_training_data(paths, channels, _hp(40))
        at_start = class_names(3, data.class_names)
        assert at_start == ("circle", "square", "class_2")  # what the peek saw
        epoch = list(data.train.training_pass(data.samples_per_epoch(2), 2,
                                              np.random.default_rng(0)))
    finally:
        writer.kill()
        writer.wait()
    assert len(epoch) == 40
    assert exported_classes(3, data, at_start) == ("circle", "square", "triangle")


def test_sharded_images_with_replicated_annotations(tmp_path: Path, caplog) -> None:
    """10 images sharded 5 + 5, all 10 annotations on both hosts: each host trains on its 5
    and counts the other 5 annotations as skipped, instead of failing on 5 of 10 errors."""
    caplog.set_level("INFO")
    for index, (paths, channels) in enumerate(sharded_by_key_layout(tmp_path, (5, 5))):
        data = read_training_data(paths, channels, _hp(10), Shard(index, 2))
        assert len(data.train.samples) == 5
        assert "train (image + JSON): 10 found, 5 used, 5 skipped (5 annotations of images " \
               "on other hosts), 0 with errors" in caplog.text
        assert data.class_names == {0: "circle", 1: "square", 2: "triangle"}
        caplog.clear()


def test_missing_image_is_still_an_error_on_one_host(tmp_path: Path) -> None:
    ((paths, channels),) = sharded_by_key_layout(tmp_path, (5,))
    next(paths.channel_dir("train").glob("*.jpg")).unlink()
    with pytest.raises(ClientError) as caught:
        read_training_data(paths, channels, _hp(5))
    assert "does not exist in the image channel" in str(caught.value)


def test_sharded_host_with_fewer_images_than_a_batch_repeats_them(tmp_path: Path) -> None:
    """ShardedByS3Key gave host 0 one image of 6, mini_batch_size=4: its epoch is one batch of
    4 (ceil(6 / 2) rounded up to a batch) made of repeats, as on host 1, instead of refusing
    mini_batch_size as larger than the channel."""
    from plans import optimization
    from ssd_sagemaker.training.schedule import check_batch_size

    hp = _hp(6, mini_batch_size="4")
    for index, (paths, channels) in enumerate(sharded_by_key_layout(tmp_path, (1, 5))):
        data = read_training_data(paths, channels, hp, Shard(index, 2))
        assert data.num_train_images == 6  # the declared count: a shard cannot see the rest
        check_batch_size(optimization(hp), data.num_train_images)
        epoch = list(data.train.training_pass(data.samples_per_epoch(4), 4,
                                              np.random.default_rng(0)))
        assert len(epoch) == 4
        assert {s.origin for s in epoch} <= {s.origin for s in data.train.samples}


def test_an_epochs_order_is_fixed_by_its_number(tmp_path: Path) -> None:
    """What a resumed job and the learnability benchmark's reference loop rely on: epoch e
    trains on the same samples in the same order every time, and other epochs reshuffle."""
    paths = Paths(tmp_path)
    data = read_training_data(paths, _image_channels(paths, 8, 0), _hp(8))
    orders = {epoch: [s.origin for s in data.epoch_samples(epoch, 2)] for epoch in (0, 1)}
    assert orders[0] == [s.origin for s in data.epoch_samples(0, 2)]
    assert orders[0] != orders[1]
    assert sorted(orders[0]) == sorted(orders[1]) == sorted(s.origin for s in data.train.samples)
