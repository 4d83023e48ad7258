"""MXNet RecordIO, in plain Python so it reads files, FIFOs and bytes alike and runs in loader
workers without MXNet: the framing (dmlc-core's `RecordIOWriter`/`RecordIOReader`, including
records split where their data contains the magic number), the image record header
(`mx.recordio.IRHeader`) and the detection label layout written by im2rec:
`[A, B, extra..., (class, xmin, ymin, xmax, ymax[, difficult, ...])*]` with A the header width
(>= 2), B the width of one object (>= 5) and coordinates as fractions of the image size.

Channels are read resynchronising after a break in the framing (a foreign object among
concatenated ones, a damaged record): the reader skips to the next record start and the
channel's report counts the bytes skipped, so a break costs what it damaged and says so.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ssd_sagemaker.data.checks.images import BadImage, decode, inspect_bytes, peek_size
from ssd_sagemaker.data.checks.report import ChannelReport
from ssd_sagemaker.data.checks.samples import RecordRef, Sample, class_id_problem, fit_boxes
from ssd_sagemaker.data.formats.channel_files import channel_entries, open_channel_file
from ssd_sagemaker.data.formats.protocol import (
    ChannelRead,
    FileChannel,
    Parser,
    ReadContext,
    media_type,
)
from ssd_sagemaker.data.loading.sharding import Shard, SharePositions
from ssd_sagemaker.environment import FULLY_REPLICATED, ChannelConfig
from ssd_sagemaker.errors import ClientError

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_FRAME = struct.Struct("<II")  # magic, (cflag << 29) | length
_IR_HEADER = struct.Struct("<IfQQ")  # flag (label length), label, id, id2
_LENGTH_MASK = (1 << 29) - 1
_SCAN_CHUNK = 1 << 16
KIND = "RecordIO"
# Bytes of an image read before training when an .idx gives the records' places: enough for the
# frame header of most JPEGs (one with a large EXIF block first is read whole).
PEEK = 1024
LOG = logging.getLogger(__name__)


class RecordIOFormatError(ValueError):
    """The bytes are not RecordIO framing; the message says where, `head` what was there."""

    def __init__(self, message: str, head: bytes = b""):
        super().__init__(message)
        self.head = head

    @property
    def looks_like_json(self) -> bool:
        return self.head.lstrip()[:1] in (b"{", b"[")


def _read_exact(stream: BinaryIO | _Rewindable, size: int) -> bytes:
    data = stream.read(size)
    while data is not None and len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            break
        data += more
    return data or b""


class _Rewindable:
    """A stream with a push-back buffer, so bytes read past a framing break can be rescanned
    (a FIFO cannot seek)."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.pending = bytearray()

    def read(self, size: int) -> bytes:
        if not self.pending:
            return _read_exact(self.stream, size)
        head = bytes(self.pending[:size])
        del self.pending[:size]
        return head + _read_exact(self.stream, size - len(head)) if len(head) < size else head

    def push_back(self, data: bytes) -> None:
        self.pending[:0] = data


def _read_one(stream: BinaryIO | _Rewindable, position: int,
              raw: list[bytes] | None = None) -> tuple[bytes, int] | None:
    """The next record's payload and the bytes consumed, None at the end of the stream; every
    byte read is appended to `raw` when given (to rescan them after a break)."""
    payload = bytearray()
    consumed = 0
    while True:
        frame = _read_exact(stream, _FRAME.size)
        if raw is not None:
            raw.append(frame)
        if not frame and consumed == 0:
            return None
        if len(frame) < _FRAME.size:
            raise RecordIOFormatError(f"the data ends inside a record header at byte "
                                      f"{position + consumed} (truncated file or stream)")
        magic, word = _FRAME.unpack(frame)
        if magic != MAGIC:
            hint = (" (the bytes look like text: an .idx or .lst file sent with the records?)"
                    if frame[:1].isdigit() else "")
            raise RecordIOFormatError(f"no RecordIO magic number at byte {position + consumed}"
                                      f"{hint}", frame)
        flag, length = word >> 29, word & _LENGTH_MASK
        padded = (length + 3) & ~3
        data = _read_exact(stream, padded)
        if raw is not None:
            raw.append(data)
        consumed += _FRAME.size + len(data)
        if len(data) < padded:
            raise RecordIOFormatError(f"the data ends inside a record at byte "
                                      f"{position + consumed} (truncated file or stream)")
        payload += data[:length]
        if flag in (0, 3):
            return bytes(payload), consumed
        payload += _MAGIC_BYTES  # a split record: the writer cut out a magic number here


def read_record(stream: BinaryIO, position: int = 0) -> tuple[bytes, int] | None:
    """The next record's payload and the bytes consumed, None at the end of the stream.
    `position` (the stream offset) only makes errors precise."""
    return _read_one(stream, position)


def _skip_to_record(stream: _Rewindable) -> tuple[int, bool]:
    """Read up to the next record start (a magic number whose header begins a record, at any
    alignment: a foreign object shifts what follows) and push it back. Returns the bytes
    skipped and whether a record start was found (else the stream ended)."""
    window = b""
    skipped = 0
    while True:
        chunk = stream.read(_SCAN_CHUNK)
        window += chunk
        at = window.find(_MAGIC_BYTES)
        while at != -1 and at + _FRAME.size <= len(window):
            if _FRAME.unpack_from(window, at)[1] >> 29 in (0, 1):
                stream.push_back(window[at:])
                return skipped + at, True
            at = window.find(_MAGIC_BYTES, at + 1)
        if len(chunk) < _SCAN_CHUNK:  # the end: a magic number too close to it starts nothing
            return skipped + len(window), False
        keep = len(window) - at if at != -1 else _FRAME.size - 1
        skipped += len(window) - keep
        window = window[len(window) - keep:]


def iter_records(stream: BinaryIO, start: int = 0, report: ChannelReport | None = None,
                 source: str = "") -> Iterator[tuple[int, bytes]]:
    """(offset, payload) of every record of a stream. Without a `report` a break in the
    framing raises RecordIOFormatError. With one, reading resumes at the next record start
    and the skipped bytes are counted in the report, named by `source` (the object) and byte
    offset: a damaged record, or a foreign object among concatenated ones, costs only its own
    bytes, never silently the rest of the stream."""
    if report is None:
        position = start
        while (record := _read_one(stream, position)) is not None:
            yield position, record[0]
            position += record[1]
        return
    reader = _Rewindable(stream)
    position = start
    while True:
        raw: list[bytes] = []
        try:
            record = _read_one(reader, position, raw)
        except RecordIOFormatError as error:
            data = b"".join(raw)
            reader.push_back(data[1:])  # the next record may start inside what was read
            skipped, found = _skip_to_record(reader)
            lost = 1 + skipped
            report.read_bytes += lost
            where = (f"{lost} bytes skipped to the next record at byte {position + lost}"
                     if found else f"the {lost} bytes to the end of the data are lost")
            report.lose(f"{source} byte {position}", lost, f"{error}; {where}")
            position += lost
            continue
        if record is None:
            return
        report.read_bytes += record[1]
        yield position, record[0]
        position += record[1]


def write_record(stream: BinaryIO, payload: bytes) -> int:
    """Frame `payload` as dmlc-core does (split at aligned magic numbers, padded to 4 bytes);
    returns the bytes written."""
    written, start = 0, 0
    for aligned in range(0, len(payload) - len(payload) % 4, 4):
        if payload[aligned:aligned + 4] == _MAGIC_BYTES:
            flag = 1 if start == 0 else 2
            stream.write(_FRAME.pack(MAGIC, (flag << 29) | (aligned - start)))
            stream.write(payload[start:aligned])
            written += _FRAME.size + aligned - start
            start = aligned + 4
    rest = len(payload) - start
    stream.write(_FRAME.pack(MAGIC, ((3 if start else 0) << 29) | rest))
    stream.write(payload[start:])
    padding = (-rest) % 4
    stream.write(b"\0" * padding)
    return written + _FRAME.size + rest + padding


def pack(label: np.ndarray | list[float], image: bytes, record_id: int = 0) -> bytes:
    """An image record as `mx.recordio.pack` writes it with a label array (im2rec
    --pack-label)."""
    label = np.asarray(label, dtype=np.float32).ravel()
    return _IR_HEADER.pack(len(label), 0.0, record_id, 0) + label.tobytes() + image


def unpack(record: bytes) -> tuple[np.ndarray, bytes, int]:
    """(label float32 array, image bytes, record id) of an image record."""
    if len(record) < _IR_HEADER.size:
        raise RecordIOFormatError(f"the record has {len(record)} bytes, fewer than the "
                                  f"{_IR_HEADER.size}-byte image record header")
    flag, scalar, record_id, _ = _IR_HEADER.unpack_from(record)
    if flag == 0:
        return np.array([scalar], dtype=np.float32), record[_IR_HEADER.size:], record_id
    end = _IR_HEADER.size + 4 * flag
    if end > len(record):
        raise RecordIOFormatError(f"the record header announces a label of {flag} numbers, "
                                  f"longer than the record")
    label = np.frombuffer(record, dtype=np.float32, count=flag, offset=_IR_HEADER.size)
    return label.copy(), record[end:], record_id


def read_payload(ref: RecordRef) -> bytes:
    """The image bytes of the record at `ref` (in loader workers)."""
    with open(ref.path, "rb") as stream:
        stream.seek(ref.offset)
        record = read_record(stream, ref.offset)
    if record is None:
        raise RecordIOFormatError(f"no record at byte {ref.offset} of {ref.path}")
    return unpack(record[0])[1] if ref.image_record else record[0]


class LabelTooWide(ClientError):
    """A label longer than `label_width`: refused at once, since the fix is a hyperparameter."""


@dataclass
class ParsedLabel:
    boxes: np.ndarray  # normalised corners
    class_ids: np.ndarray
    difficult: np.ndarray
    problems: list[str]
    warnings: list[str]


def parse_label(label: np.ndarray, num_classes: int, width: int, height: int) -> ParsedLabel:
    """Check a detection label against the im2rec layout; objects with class -1 are padding."""
    problems: list[str] = []
    empty = ParsedLabel(np.zeros((0, 4), np.float32), np.zeros(0, np.int32), np.zeros(0, bool),
                        problems, [])
    if len(label) < 2:
        problems.append(f"has a label of {len(label)} number(s), not a detection label [A, B, "
                        f"...]; pack records with im2rec --pack-label")
        return empty
    header, width_b = float(label[0]), float(label[1])
    if not (header.is_integer() and header >= 2 and width_b.is_integer() and width_b >= 5):
        problems.append(f"has the label header A={header:g}, B={width_b:g}; A (header width) "
                        f"must be an integer >= 2 and B (numbers per object) an integer >= 5")
        return empty
    header, width_b = int(header), int(width_b)
    body = label[header:]
    if len(label) < header or len(body) % width_b:
        problems.append(f"has {len(body)} numbers after its {header}-number header, not a "
                        f"multiple of B={width_b} (numbers per object)")
        return empty
    objects = body.reshape(-1, width_b)
    objects = objects[objects[:, 0] != -1]
    if not np.isfinite(objects[:, :5]).all():
        problems.append("has a NaN or infinite number among its objects")
        return empty
    ids = objects[:, 0]
    valid = (ids == np.floor(ids)) & (ids >= 0) & (ids < num_classes)
    for index in np.flatnonzero(~valid).tolist():  # words only for the faulty ones
        problems.append(f"object {index} has {class_id_problem(float(ids[index]), num_classes)}")
    pixels = objects[:, 1:5].astype(np.float64) * [width, height, width, height]
    names = [f"object {i}" for i in range(len(objects))]
    fitted, warnings, errors = fit_boxes(pixels, width, height, names)
    problems += errors
    boxes = (fitted / np.array([width, height, width, height], dtype=np.float32))
    difficult = objects[:, 5] > 0.5 if width_b >= 6 else np.zeros(len(objects), bool)
    return ParsedLabel(boxes.astype(np.float32), objects[:, 0].astype(np.int32), difficult,
                       problems, warnings)


def sample_from_record(record: bytes, origin: str, image: bytes | RecordRef | None,
                       context: ReadContext) -> Sample | None:
    """The sample of one image record, or None (its problems in the context's report).
    `image` is what the sample keeps to reach its bytes later: a `RecordRef`, or None for the
    bytes themselves (streams). A label wider than `label_width` raises `LabelTooWide` (with
    `thorough`, as validate-data reads, it is reported like any other fault, and the image
    is decoded too). With `defer_images` (training) the image's size is read from its frame
    header and the rest left to the loader; `record` may then be the start of the payload
    that holds the size (`_record_head`)."""
    report, label_width = context.report, context.label_width
    try:
        label, data, _ = unpack(record)
    except RecordIOFormatError as error:
        report.error(origin, str(error))
        return None
    if len(label) > label_width:
        too_wide = LabelTooWide(
            f"{origin} has a label of {len(label)} numbers, more than label_width="
            f"{label_width}; set the hyperparameter label_width to at least {len(label)}.")
        if not context.thorough:
            raise too_wide
        report.error(origin, str(too_wide)[len(origin) + 1:])
        return None
    size = peek_size(data) if context.defer_images else None
    try:
        if size is None:
            header = inspect_bytes(data)
            size = header.width, header.height
        if context.thorough:
            decode(data)
    except BadImage as error:
        report.error(origin, f"image {error}")
        return None
    parsed = parse_label(label, context.num_classes, *size)
    for warning in parsed.warnings:
        report.warn(origin, warning)
    for problem in parsed.problems:
        report.error(origin, problem)
    if parsed.problems:
        return None
    return Sample(origin=origin, image=data if image is None else image, boxes=parsed.boxes,
                  class_ids=parsed.class_ids, difficult=parsed.difficult)


@dataclass(frozen=True)
class CheckedRecord:
    """One record's sample (None: refused) and what its check reported."""

    sample: Sample | None
    errors: dict[str, list[str]]
    warnings: list[str]


@dataclass(frozen=True)
class RecordChecker:
    """Checks one record of a channel's file on its own (picklable: validate-data runs it in
    pool workers): `sample_from_record` into a report of its own, returned with the sample."""

    channel: str
    num_classes: int
    label_width: int
    thorough: bool
    defer_images: bool = False

    def __call__(self, item: tuple[str, Path, int, bytes]) -> CheckedRecord:
        origin, path, offset, record = item
        report = ChannelReport(self.channel, KIND)
        sample = sample_from_record(record, origin, RecordRef(path, offset), ReadContext(
            report, self.num_classes, self.label_width, self.thorough,
            defer_images=self.defer_images))
        return CheckedRecord(sample, report.errors, report.warnings)


def _scanned_records(path: Path, name: str, channel_dir: Path,
                     report: ChannelReport) -> Iterator[tuple[str, Path, int, bytes]]:
    """(origin, file, offset, payload) of every record of a file read whole; breaks in the
    framing are counted in `report`."""
    with open_channel_file(path, channel_dir, report.channel) as stream:
        for index, (offset, record) in enumerate(iter_records(stream, report=report,
                                                              source=name)):
            yield f"{name} record {index}", path, offset, record


def _index_offsets(path: Path, channel_dir: Path, channel: str) -> list[int] | None:
    """The record offsets the `.idx` beside `path` lists (im2rec's and `convert`'s
    `index<TAB>offset` lines), sorted; None without one, or when it is not such a list."""
    idx = path.with_suffix(".idx")
    if not idx.is_file():
        return None
    with open_channel_file(idx, channel_dir, channel) as stream:
        text = stream.read()
    try:
        offsets = sorted({int(line.split("\t")[1]) for line in text.decode("ascii").split("\n")
                          if line.strip()})
    except (ValueError, IndexError, UnicodeDecodeError):
        return None
    return offsets or None


def _record_end(descriptor: int, offset: int) -> int | None:
    """Where the record at `offset` ends, from its frame headers alone; None when no whole
    record starts there."""
    position = offset
    while True:
        frame = os.pread(descriptor, _FRAME.size, position)
        if len(frame) < _FRAME.size:
            return None
        magic, word = _FRAME.unpack(frame)
        flag = word >> 29
        if magic != MAGIC or (position == offset) != (flag in (0, 1)):
            return None
        position += _FRAME.size + (((word & _LENGTH_MASK) + 3) & ~3)
        if flag in (0, 3):
            return position


def _index_mismatch(descriptor: int, offsets: list[int], size: int) -> str | None:
    """Why `offsets` do not tile the file record after record with nothing between (then the
    file is scanned), or None."""
    if offsets[0] != 0:
        return f"its first record is at byte {offsets[0]}, not 0"
    for offset, following in zip(offsets, offsets[1:] + [size]):
        end = _record_end(descriptor, offset)
        if end != following:
            return (f"no whole record starts at byte {offset}" if end is None else
                    f"the record at byte {offset} ends at byte {end}, not at {following}")
    return None


def _record_head(descriptor: int, offset: int) -> bytes:
    """The start of the payload of the record at `offset` that holds its label and its
    image's size (`PEEK` bytes of the image), else the whole payload."""
    frame = os.pread(descriptor, _FRAME.size + _IR_HEADER.size, offset)
    word = _FRAME.unpack_from(frame)[1]  # `_index_mismatch` found a record start here
    flag, length = word >> 29, word & _LENGTH_MASK
    if flag == 0 and len(frame) == _FRAME.size + _IR_HEADER.size:
        head = _IR_HEADER.size + 4 * _IR_HEADER.unpack_from(frame, _FRAME.size)[0] + PEEK
        if head < length:
            data = os.pread(descriptor, head, offset + _FRAME.size)
            if peek_size(data[head - PEEK:]) is not None:
                return data
    if flag == 0:
        return os.pread(descriptor, length, offset + _FRAME.size)
    with os.fdopen(os.dup(descriptor), "rb") as stream:  # a record split in parts
        stream.seek(offset)
        record = read_record(stream, offset)
    return record[0] if record else b""


def _indexed_records(path: Path, name: str, channel_dir: Path, report: ChannelReport,
                     positions: SharePositions) -> Iterator[tuple[str, Path, int, bytes]] | None:
    """The records of a file through its `.idx`, each read only as far as its label and its
    image's size (training's start: the loader reads the rest), and only those `positions`
    gives this host; None when the file has no `.idx` that tiles it exactly (then it is
    scanned, which also counts lost bytes)."""
    offsets = _index_offsets(path, channel_dir, report.channel)
    if offsets is None:
        return None
    stream = open_channel_file(path, channel_dir, report.channel)
    descriptor, size = stream.fileno(), os.fstat(stream.fileno()).st_size
    mismatch = _index_mismatch(descriptor, offsets, size)
    if mismatch is not None:
        stream.close()
        LOG.warning("%s: %s does not match the file (%s); the file is read whole", name,
                    path.with_suffix(".idx").name, mismatch)
        return None
    report.read_bytes += size

    def records() -> Iterator[tuple[str, Path, int, bytes]]:
        with stream:
            for index, offset in enumerate(offsets):
                if positions.take():
                    yield (f"{name} record {index}", path, offset,
                           _record_head(descriptor, offset))
    return records()


def _channel_records(files: list[Path], channel_dir: Path, report: ChannelReport,
                     indexed: bool, positions: SharePositions
                     ) -> Iterator[tuple[str, Path, int, bytes]]:
    """(origin, file, offset, payload) of the records of the files, in order; breaks in the
    framing are counted in `report`. `indexed`: files with a matching `.idx` are read
    through it, each payload only as far as `_record_head` reads. `positions`: only this
    host's records (a scanned file is read whole, its other records skipped unchecked)."""
    for path in files:
        name = f"{report.channel}/{path.relative_to(channel_dir).as_posix()}"
        records = _indexed_records(path, name, channel_dir, report, positions) \
            if indexed else None
        if records is None:
            records = (record for record in _scanned_records(path, name, channel_dir, report)
                       if positions.take())
        yield from records


def read_recordio_channel(channel_dir: Path, context: ReadContext,
                          shard: Shard = Shard()) -> FileChannel:
    """Every record of every `.rec` file under `channel_dir` (sorted), checked; an `.idx`
    next to it is not needed (the file is scanned once: labels and image headers checked).
    `thorough` (validate-data) decodes every image and reports labels too wide;
    `defer_images` (training) reads each record through the `.idx` when there is one that
    matches, only as far as its label and image size, and leaves the image to the loader.
    `shard`: this host's part of a FullyReplicated channel, records `index`, `index + count`,
    ... of the channel in file order, chosen before their labels are read."""
    channel_dir, report = Path(channel_dir), context.report
    files = channel_entries(channel_dir, "*.rec")
    if not files:
        present = sorted(p.name for p in channel_dir.rglob("*") if p.is_file())[:5] \
            if channel_dir.is_dir() else []
        raise ClientError(
            f"The {report.channel} channel ({channel_dir}) is declared application/x-recordio "
            f"but holds no .rec file (found: {', '.join(present) or 'nothing'}); write "
            f"RecordIO with `ssd-sagemaker convert` or MXNet's im2rec --pack-label, or "
            f"declare the channel's ContentType as image/jpeg with a {report.channel}"
            f"_annotation channel.")
    check = RecordChecker(report.channel, context.num_classes, context.label_width,
                          context.thorough, context.defer_images)
    positions = SharePositions(shard)
    records = _channel_records(files, channel_dir, report, context.defer_images, positions)
    samples = []
    for checked in context.map_in_order(check, records):
        report.found += 1
        report.errors.update(checked.errors)
        report.warnings.extend(checked.warnings)
        report.examined()
        if checked.sample is not None:
            samples.append(checked.sample)
            report.used += 1
    return FileChannel(samples, {}, report, total=positions.seen if shard.count > 1 else None)


def _unwrapped(records: Iterator[tuple[int, bytes]], source: str,
               report: ChannelReport) -> Iterator[tuple[int, bytes]]:
    """Records, with RecordIO files that were wrapped whole into one record (a Pipe-mode
    channel of .rec files with RecordWrapperType=RecordIO) opened up."""
    for offset, record in records:
        if record[:4] == _MAGIC_BYTES:
            inner = ChannelReport(report.channel, report.kind)  # its bytes are counted already
            yield from iter_records(io.BytesIO(record), report=inner,
                                    source=f"{source} (the .rec file wrapped in the record at "
                                           f"byte {offset})")
            report.lost_bytes += inner.lost_bytes
            report.losses += inner.losses
        else:
            yield offset, record


def parse_records(records: Iterator[tuple[int, bytes]], source: str, context: ReadContext,
                  keep: Callable[[int], bool] = lambda index: True) -> Iterator[Sample]:
    """Samples of a stream of image records (Pipe mode: `records` from `iter_records` with
    the context's report, which counts what a break in the framing costs); records for which
    `keep(index)` is false are another worker's and are not checked."""
    report = context.report
    for index, (_, record) in enumerate(_unwrapped(records, source, report)):
        if not keep(index):
            continue
        report.found += 1
        sample = sample_from_record(record, f"{source} record {index}", None, context)
        if sample is not None:
            report.used += 1
            yield sample


class RecordIOFormat:
    """MXNet RecordIO channels (im2rec, `ssd-sagemaker convert`), File or Pipe mode."""

    kind = KIND
    streams = True
    readme_row = ("MXNet RecordIO (`.rec`, `.idx` optional)",
                  "`ContentType` `application/x-recordio`", "File or Pipe")
    declaration = "application/x-recordio (RecordIO)"
    content_types = frozenset({"application/x-recordio"})

    def claims(self, config: ChannelConfig) -> bool:
        return not config.attribute_names and media_type(config) in self.content_types

    def check(self, channels: Mapping[str, ChannelConfig], name: str) -> None:
        """Every RecordIO declaration is readable."""

    def read_files(self, request: ChannelRead) -> FileChannel:
        return read_recordio_channel(
            request.directory, request.context(KIND),
            request.shard if request.config.distribution == FULLY_REPLICATED else Shard())

    def stream_parser(self, request: ChannelRead) -> Parser:
        def parse(stream: BinaryIO, source: str, report: ChannelReport, names: dict,
                  keep: Callable[[int], bool]) -> Iterator[Sample]:
            records = iter_records(stream, report=report, source=source)
            return parse_records(records, source, request.in_stream(report), keep)
        return parse


FORMAT = RecordIOFormat()
