"""What a channel format implements, so that `channels.py` reads every format the same way: a
format says which channel declarations are its own, reads a File-mode channel's files into a
`FileChannel`, and (if it can be streamed) parses a Pipe-mode stream. A new format is one module
with one such object and one entry in `channels.FORMATS`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from ssd_sagemaker.data.checks.report import ChannelReport
from ssd_sagemaker.data.checks.samples import Sample
from ssd_sagemaker.data.loading.sharding import Shard
from ssd_sagemaker.environment import ChannelConfig, Paths

# A Pipe-mode stream's reader: (stream, stream name, report, class names found, keep(index))
# -> samples; `loading/pipe.py` calls it on each pass's FIFO.
Parser = Callable[[BinaryIO, str, ChannelReport, dict, Callable[[int], bool]], Iterator[Sample]]
# How a reader applies its per-file check to a channel's files, results in the files' order:
# `map` in training; a process pool in validate-data (data/checks/parallel.py).
OrderedMap = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]


def media_type(config: ChannelConfig) -> str:
    """The channel's ContentType without parameters, lower case
    (`image/JPEG; q=1` → `image/jpeg`)."""
    return config.content_type.split(";")[0].strip().lower()


@dataclass(frozen=True)
class FileChannel:
    """A File-mode channel read and checked: its samples, class names and report."""

    samples: list[Sample]
    class_names: dict[int, str]
    report: ChannelReport
    # examples of the whole channel when only this host's `ChannelRead.shard` was read (every
    # host counts them alike from the names); None when the whole channel was read
    total: int | None = None


@dataclass(frozen=True)
class ReadContext:
    """What checking a channel's examples takes, fixed for the whole read, so each reader and
    each example's check takes this one argument: the `report` that counts and names every
    problem, the job's `num_classes` and `label_width` (RecordIO labels wider are refused),
    and `thorough` (validate-data: decode every image, report a too-wide label instead of
    stopping at it)."""

    report: ChannelReport
    num_classes: int
    label_width: int
    thorough: bool = False
    map_in_order: OrderedMap = map
    defer_images: bool = False  # see ChannelRead


@dataclass(frozen=True)
class ChannelRead:
    """One channel to read, with what every format may need. `thorough` (validate-data) also
    decodes every image and reports every fault; `hosts` is how many hosts share the channel."""

    paths: Paths
    channels: Mapping[str, ChannelConfig]
    name: str
    num_classes: int
    label_width: int
    thorough: bool = False
    hosts: int = 1
    on_example: Callable[[], None] | None = None  # after each example checked (progress)
    map_in_order: OrderedMap = map  # applies a reader's per-file check (see OrderedMap)
    # the part of a FullyReplicated channel this host reads; a format that can choose it from
    # names alone reads only that part (and says so with `FileChannel.total`)
    shard: Shard = Shard()
    # training: leave each image's checks (structure, decode) to the loader workers, which
    # make them as the image is used (data/loading/refusals.py); reading takes only what must
    # be known before training: names, annotations or labels, sizes
    defer_images: bool = False

    def report(self, kind: str) -> ChannelReport:
        """The report of this read, counting into `on_example`."""
        return ChannelReport(self.name, kind, on_example=self.on_example)

    def context(self, kind: str) -> ReadContext:
        """The context of a File-mode read of this channel."""
        return self.in_stream(self.report(kind))

    def in_stream(self, report: ChannelReport) -> ReadContext:
        """The context of one Pipe-mode pass, which brings its own report."""
        return ReadContext(report, self.num_classes, self.label_width, self.thorough,
                           self.map_in_order, self.defer_images)

    @property
    def config(self) -> ChannelConfig:
        return self.channels[self.name]

    @property
    def directory(self) -> Path:
        return self.paths.channel_dir(self.name)


class ChannelFormat(Protocol):
    """`kind` names the format in messages; `declaration` says how a channel declares it (for
    the messages refusing what no format claims; `{channel}` is the channel's name); `streams`
    is whether it can be read in Pipe mode; `readme_row` is its row of the README's table of
    formats (format, declare the channel as, input mode), which scripts/update_readme.py writes."""

    kind: str
    declaration: str
    streams: bool
    readme_row: tuple[str, str, str]

    def claims(self, config: ChannelConfig) -> bool:
        """True when `config` declares this format (exactly one format may claim a channel)."""

    def check(self, channels: Mapping[str, ChannelConfig], name: str) -> None:
        """A ClientError when the claimed channel cannot be read as declared."""

    def read_files(self, request: ChannelRead) -> FileChannel:
        """The channel's files read; problems in the report, not raised."""

    def stream_parser(self, request: ChannelRead) -> Parser:
        """The parser of a Pipe-mode stream (only asked when `streams`)."""
