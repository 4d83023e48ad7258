"""Augmented manifests (SageMaker Ground Truth) with `RecordWrapperType=RecordIO`: per manifest
line, one RecordIO record per name in the channel's `AttributeNames`, in that order: the image
attribute (`source-ref`: SageMaker streams the S3 object's bytes), the bounding-box attribute
(JSON `{"image_size": [...], "annotations": [...]}`, the JSON annotation object) and, when
listed, its `<attribute>-metadata` JSON whose `class-map` names the classes.

SageMaker sends this stream through a Pipe-mode FIFO; in File mode the channel's files hold the
same records (every file under the channel, in name order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

from ssd_sagemaker.data.checks.images import BadImage, decode, inspect_bytes
from ssd_sagemaker.data.checks.report import ChannelReport
from ssd_sagemaker.data.checks.samples import RecordRef, Sample, normalised
from ssd_sagemaker.data.formats.channel_files import channel_entries, open_channel_file
from ssd_sagemaker.data.formats.image_json import parse_annotation
from ssd_sagemaker.data.formats.protocol import ChannelRead, FileChannel, Parser, ReadContext
from ssd_sagemaker.data.formats.recordio import RecordIOFormatError, iter_records
from ssd_sagemaker.data.loading.sharding import Shard, SharePositions
from ssd_sagemaker.environment import FULLY_REPLICATED, ChannelConfig
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.user_json import BadJSON, parse_json, shown

KIND = "augmented manifest"
EXAMPLE_ATTRIBUTES = '["source-ref", "bounding-box"]'


@dataclass(frozen=True)
class Attributes:
    """Which record of a manifest line is what."""

    names: tuple[str, ...]
    image: int
    boxes: int
    metadata: int | None

    @classmethod
    def from_names(cls, channel: str, names: Sequence[str]) -> Attributes:
        """The image attribute is the one ending in `-ref`; the boxes the first other one that
        is not metadata; the metadata `<boxes>-metadata` when listed."""
        names = tuple(names)
        refs = [i for i, name in enumerate(names) if name.endswith("-ref")]
        others = [i for i, name in enumerate(names)
                  if not name.endswith("-ref") and not name.endswith("-metadata")]
        if len(refs) != 1 or not others:
            raise ClientError(
                f"Channel '{channel}' has AttributeNames {list(names)}; an object-detection "
                f"augmented manifest needs exactly one image attribute ending in '-ref' and a "
                f"bounding-box attribute, in the order of the manifest, e.g. "
                f"{EXAMPLE_ATTRIBUTES} (optionally with \"bounding-box-metadata\" for class "
                f"names).")
        metadata = f"{names[others[0]]}-metadata"
        return cls(names, refs[0], others[0], names.index(metadata) if metadata in names else None)


def _class_id(key: str) -> int | None:
    """A class-map key ("0", "12") as an int; None for anything else (also "²", 5,000 digits)."""
    text = key.strip()
    if not (0 < len(text) <= 9 and text.isascii() and text.isdigit()):
        return None
    return int(text)


def _class_map(metadata: object, origin: str, names: dict[int, str],
               report: ChannelReport) -> None:
    class_map = metadata.get("class-map") if isinstance(metadata, dict) else None
    if not isinstance(class_map, dict):
        return
    for key, name in class_map.items():
        class_id = _class_id(key)
        if class_id is None or not isinstance(name, str):
            report.warn(origin, f"class-map entry {shown(key)}: {shown(name)} is not "
                                f"\"<class id>\": \"<name>\"; ignored")
            continue
        first = names.setdefault(class_id, name)
        if first != name:
            report.warn(origin, f"class-map names class {class_id} {shown(name)}, earlier "
                                f"entries {shown(first)}; keeping {shown(first)}")


def parse_entries(records: Iterator[tuple[int, bytes]], attributes: Attributes, source: str,
                  context: ReadContext, class_names: dict[int, str],
                  keep: Callable[[int], bool] = lambda index: True,
                  image_ref: Callable[[int], RecordRef] | None = None) -> Iterator[Sample]:
    """Samples of the manifest lines in a record stream (offset, payload). Lines for which
    `keep(index)` is false are another worker's and are not checked. Problems go to the
    context's report; class names found in metadata to `class_names`. `image_ref(offset)` lets
    File-mode samples point at their image record instead of holding its bytes."""
    report = context.report
    width = len(attributes.names)
    index = 0
    while True:
        entry: list[tuple[int, bytes]] = []
        try:
            for offset, record in records:
                entry.append((offset, record))
                if len(entry) == width:
                    break
        except RecordIOFormatError as error:
            if index == 0 and error.looks_like_json:
                raise ClientError(
                    f"{source} holds JSON lines (the .manifest file itself?), not the records "
                    f"SageMaker streams for an augmented manifest. This container cannot "
                    f"download the images the lines' s3:// references name (it has no AWS "
                    f"credentials), so the channel's files must hold each line's image and "
                    f"labels as RecordIO records: declare the channel with S3DataType "
                    f"AugmentedManifestFile and RecordWrapperType RecordIO (SageMaker then "
                    f"sends the records, in Pipe or File mode), or write the records yourself "
                    f"with the images inline.") from None
            raise ClientError(
                f"{source}: the RecordIO framing breaks at line {index}: {error}. The "
                f"records after a break cannot be matched to AttributeNames "
                f"{list(attributes.names)}, so the {report.channel} channel is refused: remove "
                f"the object that is not RecordIO-wrapped manifest data, or rewrite the "
                f"damaged one.") from None
        if not entry:
            return
        origin = f"{source} line {index}"
        index += 1
        if not keep(index - 1):
            _other_workers_names(entry, attributes, origin, report, class_names)
            continue
        report.found += 1
        if len(entry) < width:
            report.error(origin, f"has {len(entry)} record(s), but AttributeNames "
                                 f"{list(attributes.names)} needs {width} per manifest line")
            return
        sample = _sample(entry, attributes, origin, context, class_names, image_ref)
        report.examined()
        if sample is not None:
            report.used += 1
            yield sample


def _other_workers_names(entry: list[tuple[int, bytes]], attributes: Attributes, origin: str,
                         report: ChannelReport, class_names: dict[int, str]) -> None:
    """The class names of a line another worker trains on: every worker, the exporting one
    included, knows the names of the whole stream."""
    if attributes.metadata is None or len(entry) < len(attributes.names):
        return
    try:
        _class_map(parse_json(entry[attributes.metadata][1]), origin, class_names, report)
    except BadJSON:
        pass  # the worker that owns the line reports it


def _sample(entry: list[tuple[int, bytes]], attributes: Attributes, origin: str,
            context: ReadContext, class_names: dict[int, str],
            image_ref: Callable[[int], RecordRef] | None) -> Sample | None:
    report = context.report
    image_offset, image = entry[attributes.image]
    box_name = attributes.names[attributes.boxes]
    try:
        header = inspect_bytes(image)
        if context.thorough:
            decode(image)
    except BadImage as error:
        looks_json = image.lstrip()[:1] in (b"{", b"[", b'"')
        hint = (f" (it looks like JSON: are the records out of step with AttributeNames "
                f"{list(attributes.names)}?)") if looks_json else ""
        report.error(origin, f"{attributes.names[attributes.image]} {error}{hint}")
        return None
    box_record = entry[attributes.boxes][1]
    try:
        document = parse_json(box_record)
    except BadJSON as problem:
        hint = ("" if box_record.lstrip()[:1] == b"{" else
                f"; the records may be out of step with AttributeNames {list(attributes.names)}")
        report.error(origin, f"{box_name} {problem}{hint}")
        return None
    parsed = parse_annotation(document, context.num_classes)
    for warning in parsed.warnings:
        report.warn(origin, f"{box_name} {warning}")
    for fault in parsed.problems:
        report.error(origin, f"{box_name} {fault}")
    if parsed.problems:
        return None
    if (header.width, header.height) != (parsed.width, parsed.height):
        report.warn(origin, f"{box_name} image_size {parsed.width}x{parsed.height} differs from "
                            f"the image ({header.width}x{header.height}); boxes are scaled")
    if attributes.metadata is not None:
        try:
            _class_map(parse_json(entry[attributes.metadata][1]), origin, class_names, report)
        except BadJSON as problem:
            report.warn(origin, f"{attributes.names[attributes.metadata]} {problem}; its "
                                f"class names are ignored")
    return Sample(origin=origin,
                  image=image_ref(image_offset) if image_ref else image,
                  boxes=normalised(parsed.boxes, parsed.width, parsed.height),
                  class_ids=parsed.class_ids)


def read_manifest_channel(channel_dir: Path, attributes: Attributes, context: ReadContext,
                          shard: Shard = Shard()) -> FileChannel:
    """File mode: every file under `channel_dir` (name order) holds RecordIO-wrapped manifest
    records; samples point at their image records. `shard`: this host's part of a
    FullyReplicated channel, lines `index`, `index + count`, ... in file order: the files are
    read whole (no index gives the lines' places), only this host's lines checked."""
    channel_dir, report = Path(channel_dir), context.report
    files = channel_entries(channel_dir)
    if not files:
        raise ClientError(f"The {report.channel} channel ({channel_dir}) holds no files; an "
                          f"augmented manifest channel in File mode needs the RecordIO-wrapped "
                          f"records SageMaker would stream (AttributeNames "
                          f"{list(attributes.names)}).")
    samples: list[Sample] = []
    names: dict[int, str] = {}
    positions = SharePositions(shard)
    for path in files:
        with open_channel_file(path, channel_dir, report.channel) as stream:
            samples.extend(parse_entries(
                iter_records(stream), attributes,
                f"{report.channel}/{path.relative_to(channel_dir).as_posix()}", context, names,
                keep=lambda _: positions.take(),
                image_ref=partial(RecordRef, path, image_record=False)))
    return FileChannel(samples, names, report, total=positions.seen if shard.count > 1 else None)


class ManifestFormat:
    """Augmented manifests (Ground Truth), RecordIO-wrapped, File or Pipe mode: declared by
    AttributeNames, whatever the ContentType."""

    kind = KIND
    streams = True
    readme_row = ("Ground Truth augmented manifest",
                  "`RecordWrapperType` `RecordIO` and `AttributeNames`, e.g. "
                  "`[\"source-ref\", \"bounding-box\", \"bounding-box-metadata\"]`",
                  "Pipe (File: the channel's files hold the same records, not the `.manifest` "
                  "JSON lines: the container cannot fetch `s3://` images)")
    declaration = "an augmented manifest (RecordWrapperType=RecordIO with AttributeNames)"

    def claims(self, config: ChannelConfig) -> bool:
        return bool(config.attribute_names)

    def check(self, channels: Mapping[str, ChannelConfig], name: str) -> None:
        config = channels[name]
        if config.record_wrapper.lower() != "recordio":
            raise ClientError(
                f"Channel '{name}' is an augmented manifest (AttributeNames "
                f"{list(config.attribute_names)}) with RecordWrapperType={config.record_wrapper}"
                f"; set RecordWrapperType=RecordIO so each image and label arrives as one "
                f"record.")

    def read_files(self, request: ChannelRead) -> FileChannel:
        attributes = Attributes.from_names(request.name, request.config.attribute_names)
        return read_manifest_channel(
            request.directory, attributes, request.context(KIND),
            request.shard if request.config.distribution == FULLY_REPLICATED else Shard())

    def stream_parser(self, request: ChannelRead) -> Parser:
        attributes = Attributes.from_names(request.name, request.config.attribute_names)

        def parse(stream: BinaryIO, source: str, report: ChannelReport, names: dict,
                  keep: Callable[[int], bool]) -> Iterator[Sample]:
            # strict framing: after a break, records could not be matched to AttributeNames
            return parse_entries(iter_records(stream), attributes, source,
                                 request.in_stream(report), names, keep)
        return parse


FORMAT = ManifestFormat()
