"""Each host of a multi-host job reads only its share of a FullyReplicated image + JSON
channel: the share is chosen from the sorted file names before any file is opened, and before
training only the share's annotation files are opened (its images are checked by the loader
as they are used)."""

from __future__ import annotations

from pathlib import Path

from ssd_sagemaker.data.channels import read_training_data
from ssd_sagemaker.data.formats import image_json
from ssd_sagemaker.data.loading.sharding import Shard
from ssd_sagemaker.data.synthetic import write_annotated_channel
from ssd_sagemaker.environment import ChannelConfig, Paths
from ssd_sagemaker.hyperparameters import parse_hyperparameters

IMAGES = 7


def _opened_by_host(tmp_path: Path, monkeypatch, index: int) -> tuple[list[str], list[str], int]:
    """(files opened, samples taken, the channel's size as the trainer sees it) for host
    `index` of 2."""
    paths = Paths(tmp_path)
    if not paths.channel_dir("train").exists():
        write_annotated_channel(paths.channel_dir("train"),
                                paths.channel_dir("train_annotation"), IMAGES, seed=3)
    opened: list[str] = []
    real = image_json.read_file

    def counting(path, *args, **kwargs):
        opened.append(Path(path).relative_to(paths.data_dir).as_posix())
        return real(path, *args, **kwargs)

    monkeypatch.setattr(image_json, "read_file", counting)
    try:
        return _read(paths, index, opened)
    finally:
        monkeypatch.setattr(image_json, "read_file", real)


def _read(paths: Paths, index: int, opened: list[str]) -> tuple[list[str], list[str], int]:
    channels = {name: ChannelConfig(name, "image/jpeg") for name in ("train", "train_annotation")}
    hp = parse_hyperparameters({"num_classes": "3", "num_training_samples": str(IMAGES)})
    data = read_training_data(paths, channels, hp, Shard(index, 2))
    return opened, [s.origin for s in data.train.validation_pass()], data.train.num_images


def test_each_of_two_hosts_opens_only_its_share_and_the_shares_cover_the_channel(
        tmp_path: Path, monkeypatch) -> None:
    first, taken_first, total_first = _opened_by_host(tmp_path, monkeypatch, 0)
    second, taken_second, total_second = _opened_by_host(tmp_path, monkeypatch, 1)
    names = [f"img_{i:04d}" for i in range(IMAGES)]
    assert first == [f"train_annotation/{n}.json" for n in names[0::2]]
    assert second == [f"train_annotation/{n}.json" for n in names[1::2]]
    assert taken_first == [f"train/{n}.jpg" for n in names[0::2]]
    assert taken_second == [f"train/{n}.jpg" for n in names[1::2]]
    assert not set(taken_first) & set(taken_second)
    assert total_first == total_second == IMAGES  # both plan the same epoch length
