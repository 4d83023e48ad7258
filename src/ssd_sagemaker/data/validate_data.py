"""`validate-data`: every data channel of the job read exactly as training reads it, plus a full
decode of every image, and reported in full (every warning and error, each naming its file or
record) instead of raised, so a dataset can be fixed in one round before paying for a job.

Pipe-mode channels are checked from the channel folder's files: the bytes SageMaker would
stream (`.rec` files, or RecordIO-wrapped manifest records).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ssd_sagemaker.data.channels import (
    agreed_class_names,
    channel_format,
    read_file_channel,
)
from ssd_sagemaker.data.checks.object_sizes import NetworkInput, object_lines
from ssd_sagemaker.data.checks.parallel import ProcessMap, pool_workers
from ssd_sagemaker.data.checks.report import MAX_ERROR_FRACTION, ChannelReport
from ssd_sagemaker.data.loading.sharding import shard_lines
from ssd_sagemaker.environment import ChannelConfig, Paths
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.progress import Progress

LOG = logging.getLogger(__name__)

DATA_CHANNELS = ("train", "validation")


@dataclass(frozen=True)
class ChannelResult:
    """A channel's report, or why it could not be read at all."""

    channel: str
    report: ChannelReport | None = None
    fatal: str | None = None
    class_names: dict[int, str] | None = None
    heading: str = "cannot be read"  # what a fatal message is about
    shards: tuple[str, ...] = ()  # what each host reads, in a job of several hosts
    objects: tuple[str, ...] = ()  # counts per class, sizes after resizing (object_sizes.py)
    object_warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.fatal is None and self.report is not None and not self.report.has_problems


def validate_channels(paths: Paths, channels: Mapping[str, ChannelConfig], num_classes: int,
                      label_width: int, hosts: int = 1, batch_size: int = 32,
                      declared: int = 0, network: NetworkInput | None = None,
                      workers: int | None = None) -> list[ChannelResult]:
    """Read `train` and `validation` (those declared) with full image decoding, the checks
    spread over `workers` processes (default: one per usable CPU); with several `hosts`, also
    what each host reads of `train` (this host's local copy of the channel); the objects per
    class and, with `network`, their sizes as the network will see them."""
    results = []
    if "train" not in channels:
        results.append(ChannelResult("train", fatal="the 'train' channel is required but not "
                                                    "declared (or its folder is missing)"))
    for name in DATA_CHANNELS:
        if name not in channels:
            continue
        # Pipe-mode channels are read from their files, as File mode would.
        files = {key: replace(config, input_mode="File") for key, config in channels.items()}
        try:
            channel_format(channels, name)  # refuses what training would refuse
            with (Progress(f"validate-data: {name}", None, "example", LOG) as progress,
                  ProcessMap(pool_workers() if workers is None else workers) as in_order):
                channel = read_file_channel(paths, files, name, num_classes, label_width,
                                            thorough=True, hosts=hosts if name == "train" else 1,
                                            on_example=progress.advance, map_in_order=in_order)
        except ClientError as error:
            results.append(ChannelResult(name, fatal=str(error)))
            continue
        shards = (shard_lines([s.origin for s in channel.samples], hosts,
                              channels[name].distribution, batch_size, declared)
                  if name == "train" and hosts > 1 else [])
        lines, warnings = object_lines(channel.samples, channel.class_names, network)
        results.append(ChannelResult(name, channel.report, class_names=channel.class_names,
                                     shards=tuple(shards), objects=tuple(lines),
                                     object_warnings=tuple(warnings)))
    try:
        agreed_class_names({result.channel: result.class_names or {} for result in results})
    except ClientError as error:
        results.append(ChannelResult("+".join(DATA_CHANNELS), fatal=str(error),
                                     heading="class ids disagree"))
    return results


def format_report(results: list[ChannelResult]) -> str:
    """The report `validate-data` prints: per channel the summary, every error and warning,
    then a verdict."""
    lines = []
    for result in results:
        if result.fatal is not None:
            lines.append(f"Channel {result.channel}: {result.heading}")
            lines += [f"  error   {line}" for line in result.fatal.splitlines()]
            continue
        report = result.report
        assert report is not None  # a channel without a fatal error has its report
        lines.append(f"Channel {report.summary()}")
        lines += [f"  error   {line}" for line in report.error_lines()]
        lines += [f"  warning {line}" for line in report.warnings]
        if result.class_names:
            lines.append(f"  classes {result.class_names}")
        lines += [f"  hosts   {line}" for line in result.shards]
        lines += [f"  objects {line}" for line in result.objects]
        lines += [f"  warning {line}" for line in result.object_warnings]
        if report.too_many_errors():
            lines.append(f"  training would refuse this channel: more than "
                         f"{100 * MAX_ERROR_FRACTION:g}% of its examples are invalid or of its "
                         f"bytes lost")
        elif report.has_problems:
            lines.append("  training would leave the invalid examples and lost bytes out")
    bad = [result.channel for result in results if not result.ok]
    lines.append(f"Result: {'problems in ' + ', '.join(bad) if bad else 'all channels valid'}")
    return "\n".join(lines)
