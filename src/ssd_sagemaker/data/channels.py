"""Turn the job's declared channels into the data the trainer needs, whatever the format:

| channel declaration | format | read by (its `FORMAT`, listed in `FORMATS`) |
|---|---|---|
| `ContentType` image/jpeg, image/png, application/x-image (+ `<channel>_annotation`) | image + JSON, File mode | `image_json.py` |
| `ContentType` application/x-recordio | MXNet RecordIO (im2rec), File or Pipe mode | `recordio.py` |
| `AttributeNames` given, `RecordWrapperType` RecordIO | augmented manifest, File or Pipe mode | `manifest.py` |

Combinations the container cannot read are refused with a message that says what to send.
Validation data is never sharded: every worker scores the same images, so their mAP, and
hence their early-stopping decisions, agree.
"""  # noqa: E501 - the table's rows are Markdown, which cannot wrap

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ssd_sagemaker.data.checks.object_sizes import NetworkInput, log_objects
from ssd_sagemaker.data.checks.samples import Sample
from ssd_sagemaker.data.formats import image_json, manifest, recordio
from ssd_sagemaker.data.formats.protocol import (
    ChannelFormat,
    ChannelRead,
    FileChannel,
    OrderedMap,
)
from ssd_sagemaker.data.loading.loader import Batches, CountedBatches, loader_workers
from ssd_sagemaker.data.loading.pipe import PipeChannel, PipeSource
from ssd_sagemaker.data.loading.refusals import Refusals
from ssd_sagemaker.data.loading.sharding import (
    Shard,
    samples_per_epoch,
    split,
)
from ssd_sagemaker.data.loading.sources import SampleList, Source
from ssd_sagemaker.data.loading.worker_pool import WorkerPool
from ssd_sagemaker.environment import FULLY_REPLICATED, SHARDED_BY_S3_KEY, ChannelConfig, Paths
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.seeding import SEED

LOG = logging.getLogger(__name__)


class JobSettings(Protocol):
    """What reading the data takes from the job (the typed hyperparameters have it): the data
    code sees these fields, not the hyperparameter table above it."""

    @property
    def num_classes(self) -> int: ...
    @property
    def label_width(self) -> int: ...
    @property
    def num_training_samples(self) -> int: ...
    @property
    def base_network(self) -> str: ...
    @property
    def image_shape(self) -> int: ...
    @property
    def smallest_anchor(self) -> float: ...

# Every format the container reads; a new format is a module with a `ChannelFormat` and an entry
# here (the order is the one the "cannot read" message lists them in).
FORMATS: tuple[ChannelFormat, ...] = (recordio.FORMAT, image_json.FORMAT, manifest.FORMAT)

__all__ = ["Shard", "TrainingData", "read_training_data", "channel_format", "read_file_channel",
           "FileChannel", "FORMATS"]


def channel_format(channels: Mapping[str, ChannelConfig], name: str) -> ChannelFormat:
    """The format that reads a data channel, or a ClientError saying what to send."""
    config = channels[name]
    claiming = [fmt for fmt in FORMATS if fmt.claims(config)]
    if not claiming:
        raise ClientError(
            f"Channel '{name}' has ContentType '{config.content_type}', which this algorithm "
            f"cannot read; send {_listed([fmt.declaration for fmt in FORMATS], name)}.")
    fmt = claiming[0]
    if config.input_mode == "Pipe" and not fmt.streams:
        streamed = _listed([f.declaration for f in FORMATS if f.streams], name)
        raise ClientError(
            f"Channel '{name}' holds {fmt.kind} data and uses TrainingInputMode=Pipe; "
            f"{fmt.kind} channels need File mode. For Pipe mode send {streamed} "
            f"(`ssd-sagemaker convert` writes RecordIO).")
    fmt.check(channels, name)
    return fmt


def _listed(declarations: list[str], channel: str) -> str:
    """`a or b`, `a, b, or c` with each format's declaration for `channel`."""
    texts = [text.replace("{channel}", channel) for text in declarations]
    if len(texts) <= 2:
        return " or ".join(texts)
    return f"{', '.join(texts[:-1])}, or {texts[-1]}"


def agreed_class_names(by_channel: Mapping[str, Mapping[int, str]]) -> dict[int, str]:
    """The job's one class-id mapping, from every channel's names (JSON `categories`, a
    manifest's `class-map`): channels giving one id two names, or one name two ids, are an
    error naming both mappings, since the model and the mAP would then score the wrong ids
    (e.g. VOC converted per channel, ids in alphabetical order of the classes present)."""
    named = [(channel, dict(names)) for channel, names in by_channel.items() if names]
    for at, (channel, names) in enumerate(named):
        ids = {name: class_id for class_id, name in names.items()}
        for other, other_names in named[at + 1:]:
            other_ids = {name: class_id for class_id, name in other_names.items()}
            clashes = ([f"{class_id}: {names[class_id]!r} vs {other_names[class_id]!r}"
                        for class_id in sorted(names.keys() & other_names.keys())
                        if names[class_id] != other_names[class_id]]
                       + [f"{name!r}: {ids[name]} vs {other_ids[name]}"
                          for name in sorted(ids.keys() & other_ids.keys())
                          if ids[name] != other_ids[name]])
            if clashes:
                raise ClientError(
                    f"The {channel} and {other} channels number the classes differently "
                    f"({'; '.join(clashes)}): {channel} {dict(sorted(names.items()))}, {other} "
                    f"{dict(sorted(other_names.items()))}. Give every channel the same ids "
                    f"(`ssd-sagemaker convert ... --classes-from` an annotation file of the "
                    f"train channel converts with its ids).")
    merged: dict[int, str] = {}
    for _, names in named:
        for class_id, name in names.items():
            merged.setdefault(class_id, name)
    return dict(sorted(merged.items()))


def read_file_channel(paths: Paths, channels: Mapping[str, ChannelConfig], name: str,
                      num_classes: int, label_width: int, thorough: bool = False,
                      hosts: int = 1,
                      on_example: Callable[[], None] | None = None,
                      shard: Shard = Shard(), map_in_order: OrderedMap = map,
                      defer_images: bool = False) -> FileChannel:
    """Read a channel's files (any format; a Pipe-mode channel's files as they would be
    streamed). Problems are in the report, not raised, except a channel that cannot be read.
    `thorough` (validate-data) also decodes every image and reports every fault. With
    several `hosts`, images sharded by S3 key beside replicated annotations leave this host
    the annotations of other hosts' images: skipped and counted. `on_example` is called after
    each example is checked (validate-data's progress). `shard`: the part of a
    FullyReplicated channel this host trains on, which a format able to choose it from names
    reads alone (the channel's `total` is then set). `map_in_order`: how the per-file checks
    run (validate-data: over a process pool). `defer_images` (training) leaves the images'
    checks to the loader workers (`ChannelRead.defer_images`)."""
    fmt = channel_format(channels, name)
    return fmt.read_files(ChannelRead(paths, channels, name, num_classes, label_width,
                                      thorough, hosts, on_example, map_in_order, shard,
                                      defer_images))


def _pipe_source(paths: Paths, channels: Mapping[str, ChannelConfig], name: str,
                 hp: JobSettings, keep: Callable[[int], bool]) -> PipeSource:
    fmt = channel_format(channels, name)
    parse = fmt.stream_parser(ChannelRead(paths, channels, name, hp.num_classes,
                                          hp.label_width))
    declared = hp.num_training_samples if name == "train" else 0
    return PipeSource(PipeChannel(paths.data_dir, name), fmt.kind, parse, declared, keep)


def _source(paths: Paths, channels: Mapping[str, ChannelConfig], name: str,
            hp: JobSettings, shard: Shard) -> Source:
    config = channels[name]
    sharded = name == "train" and shard.count > 1
    if config.input_mode == "Pipe":
        keep = (shard.owns if sharded and config.distribution == FULLY_REPLICATED
                else (lambda index: True))
        return _pipe_source(paths, channels, name, hp, keep)
    channel = read_file_channel(paths, channels, name, hp.num_classes, hp.label_width,
                                hosts=shard.count if sharded else 1,
                                shard=shard if sharded else Shard(), defer_images=True)
    channel.report.log()
    channel.report.check()
    if name == "train":
        network = NetworkInput(hp.base_network, hp.image_shape, hp.smallest_anchor)
        log_objects(channel.samples, channel.class_names, network, name)
    samples = channel.samples
    whole = channel.total if channel.total is not None else len(channel.samples)
    if sharded:
        if channel.total is None:  # the format read the whole channel: take the share now
            samples = split(samples, shard, config.distribution)
        LOG.info("%s: worker %d of %d (%s) takes %d of %d samples", name, shard.index,
                 shard.count, config.distribution, len(samples), whole)
    # a host of ShardedByS3Key data sees its shard only: the channel's size is the declared one
    total = None if sharded and config.distribution == SHARDED_BY_S3_KEY else whole
    return SampleList(name, samples, channel.class_names, total, hp.num_training_samples,
                      Refusals(channel.report))


@dataclass
class TrainingData:
    """What the trainer needs from the data, whatever the channels' format: class names,
    image counts, and per-epoch batch iterables (decoded and augmented in worker processes)."""

    train: Source
    validation: Source | None
    distribution: str = FULLY_REPLICATED
    declared_samples: int = 0
    shard: Shard = Shard()
    workers: int = field(default_factory=loader_workers)
    _pool: WorkerPool | None = field(default=None, init=False, repr=False)

    @property
    def class_names(self) -> dict[int, str]:
        """The train and validation channels' names, checked to agree (Pipe mode finds
        names while streaming, so this is asked again at export)."""
        return agreed_class_names({"train": self.train.class_names,
                                   "validation": self.validation.class_names
                                   if self.validation else {}})

    @property
    def num_train_images(self) -> int:
        return self.train.num_images

    @property
    def has_validation(self) -> bool:
        return self.validation is not None

    def _workers(self) -> WorkerPool:
        if self._pool is None:
            self._pool = WorkerPool(self.workers)
        return self._pool

    def watch_stream_count(self, callback: Callable[[str, int], None]) -> None:
        """Have `callback(stream, samples)` called once the first Pipe-mode training pass
        was read to its end: on one worker an epoch is as long as the stream, and the
        learning-rate schedule was planned with num_training_samples. (File mode is counted
        at start-up; with several workers every epoch has the declared length.)"""
        if isinstance(self.train, PipeSource) and self.shard.count == 1:
            self.train.on_counted = callback

    def samples_per_epoch(self, batch_size: int) -> int | None:
        return samples_per_epoch(self.shard, self.distribution, batch_size,
                                 self.declared_samples, self.train.local_count,
                                 self.train.total_count)

    def epoch_samples(self, epoch: int, batch_size: int) -> Iterator[Sample]:
        """This worker's samples of one training epoch, in the order they are trained on
        (seeded by the epoch: a resumed job and a benchmark's reference loop see the same)."""
        rng = np.random.default_rng([SEED, epoch, self.shard.index])
        return self.train.training_pass(self.samples_per_epoch(batch_size), batch_size, rng)

    def train_batches(self, epoch: int, transform: Callable, batch_size: int) -> Iterable:
        """Batches (images, class targets, box targets) of one training epoch, all full; as
        many per epoch on every worker (see `sharding.py`)."""
        count = self.samples_per_epoch(batch_size)
        samples = self.epoch_samples(epoch, batch_size)
        seed = (SEED, epoch, self.shard.index)
        refusals = self.train.refusals
        if count is None:
            return Batches(samples, transform, batch_size, self._workers(), seed, refusals,
                           full=True)
        return CountedBatches(samples, transform, batch_size, self._workers(),
                              count // batch_size, seed, refusals)

    def validation_batches(self, transform: Callable, batch_size: int) -> Iterable:
        """Batches (images, labels padded with -1 rows) covering the validation set once."""
        assert self.validation is not None
        return Batches(self.validation.validation_pass(), transform, batch_size,
                       self._workers(), (SEED, 2 ** 31), self.validation.refusals)

    def calibration_batches(self, transform: Callable, batch_size: int, limit: int) -> Iterable:
        """Batches of the first `limit` images of the validation channel (of the training
        channel when there is none): the sample INT8 calibration measures ranges on."""
        source = self.validation if self.validation is not None else self.train
        return Batches(itertools.islice(source.validation_pass(), limit), transform, batch_size,
                       self._workers(), (SEED, 2 ** 31), source.refusals)

    def close(self) -> None:
        """Stop the worker processes (they also stop with the process)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def read_training_data(paths: Paths, channels: Mapping[str, ChannelConfig],
                       hp: JobSettings, shard: Shard = Shard()) -> TrainingData:
    """Read `train` (required) and `validation` (optional: without it there is no mAP)."""
    if "train" not in channels:
        raise ClientError(
            f"The 'train' channel is required; the job has: "
            f"{', '.join(sorted(channels)) or 'none'}."
        )
    train = _source(paths, channels, "train", hp, shard)
    validation = None
    if "validation" in channels:
        validation = _source(paths, channels, "validation", hp, shard)
    else:
        LOG.warning("no 'validation' channel: no validation mAP, no early stopping; the last "
                    "epoch's model is exported")
    def count(source: Source | None) -> str:
        if source is None:
            return "none"
        return "streamed (Pipe mode)" if source.total_count is None and \
            source.local_count is None else str(source.num_images)
    LOG.info("training images: %s; validation images: %s", count(train), count(validation))
    data = TrainingData(train=train, validation=validation,
                        distribution=channels["train"].distribution,
                        declared_samples=hp.num_training_samples, shard=shard)
    _ = data.class_names  # channels that disagree on class ids stop the job before training
    return data
