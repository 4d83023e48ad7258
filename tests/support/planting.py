"""Helpers that write small datasets in every format, and plant faults in them."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from ssd_sagemaker.data.formats.recordio import pack, write_record
from ssd_sagemaker.data.synthetic import write_annotated_channel
from ssd_sagemaker.environment import ChannelConfig, Paths


def jpeg(width: int = 64, height: int = 48, boxes: Sequence[Sequence[int]] = (),
         seed: int = 0) -> bytes:
    """A noisy JPEG with white rectangles at `boxes` (pixel corners)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 80, (height, width, 3)).astype(np.uint8)
    for x0, y0, x1, y1 in boxes:
        image[int(y0):int(y1), int(x0):int(x1)] = 255
    return cv2.imencode(".jpg", image)[1].tobytes()


def png(width: int = 64, height: int = 48) -> bytes:
    return cv2.imencode(".png", np.full((height, width, 3), 90, np.uint8))[1].tobytes()


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels."""
    data = bytearray(png(8, 8))
    ihdr = 8  # after the signature: length (4), "IHDR" (4), width, height, ...
    data[ihdr + 8:ihdr + 16] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4:ihdr + 4 + 4 + 13]))
    data[ihdr + 8 + 13:ihdr + 8 + 13 + 4] = struct.pack(">I", crc)
    return bytes(data)


def truncated(data: bytes) -> bytes:
    return data[:len(data) // 2]


def corrupt_jpeg() -> bytes:
    """A valid JPEG header and end marker around garbage: only decoding finds the fault."""
    data = jpeg(64, 48)
    start = data.index(b"\xff\xda")  # start of scan: entropy-coded data follows
    return data[:start] + b"\xff\xda\x00\x02" + b"\xff\x01" * 20 + b"\xff\xd9"


def annotation(file: str, width: int = 64, height: int = 48,
               objects: Iterable[tuple[int, float, float, float, float]] = ((0, 5, 6, 25, 16),),
               **overrides) -> dict:
    """A JSON annotation; objects as (class_id, left, top, width, height)."""
    document = {"file": file, "image_size": [{"width": width, "height": height, "depth": 3}],
                "annotations": [{"class_id": c, "left": left, "top": t, "width": w, "height": h}
                                for c, left, t, w, h in objects]}
    document.update(overrides)
    return document


def write_json_pair(image_dir: Path, annotation_dir: Path, name: str, image: bytes | None,
                    document: dict | str | None) -> None:
    """`<image_dir>/<name>.jpg` and `<annotation_dir>/<name>.json` (None: leave out)."""
    image_dir.mkdir(parents=True, exist_ok=True)
    annotation_dir.mkdir(parents=True, exist_ok=True)
    if image is not None:
        (image_dir / f"{name}.jpg").write_bytes(image)
    if document is not None:
        text = document if isinstance(document, str) else json.dumps(document)
        (annotation_dir / f"{name}.json").write_text(text)


def detection_label(objects: Sequence[Sequence[float]], header: Sequence[float] = (2, 5)) -> list:
    """im2rec's packed label: header then the objects' numbers."""
    return [*header, *[value for row in objects for value in row]]


def image_records(count: int, seed: int = 0, width: int = 80, height: int = 60) -> list[bytes]:
    """`count` image records, each with one object (class index % 3) in the middle."""
    records = []
    for index in range(count):
        box = (0.25, 0.25, 0.75, 0.75)
        pixels = (box[0] * width, box[1] * height, box[2] * width, box[3] * height)
        records.append(pack(detection_label([(index % 3, *box)]),
                            jpeg(width, height, [pixels], seed + index), index))
    return records


def write_records(path: Path, payloads: Iterable[bytes], index: bool = True) -> Path:
    """A RecordIO file (and its .idx)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    offset = 0
    lines = []
    with open(path, "wb") as stream:
        for number, payload in enumerate(payloads):
            lines.append(f"{number}\t{offset}\n")
            offset += write_record(stream, payload)
    if index:
        path.with_suffix(".idx").write_text("".join(lines))
    return path


def manifest_records(count: int, with_metadata: bool = True, seed: int = 0) -> list[bytes]:
    """The record stream of an augmented manifest (source-ref, bounding-box[, metadata])."""
    names = ["circle", "square", "triangle"]
    records = []
    for index in range(count):
        width, height = 80, 60
        box = {"class_id": index % 3, "left": 20, "top": 15, "width": 40, "height": 30}
        records.append(jpeg(width, height, [(20, 15, 60, 45)], seed + index))
        records.append(json.dumps({"image_size": [{"width": width, "height": height,
                                                   "depth": 3}],
                                   "annotations": [box]}).encode())
        if with_metadata:
            records.append(json.dumps({"class-map": {str(index % 3): names[index % 3]},
                                       "type": "groundtruth/object-detection"}).encode())
    return records


def stream_bytes(payloads: Iterable[bytes]) -> bytes:
    import io
    buffer = io.BytesIO()
    for payload in payloads:
        write_record(buffer, payload)
    return buffer.getvalue()


def write_stream(path: Path, payloads: Iterable[bytes]) -> Path:
    """A RecordIO stream file without an index, as a Pipe-mode channel delivers it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(stream_bytes(payloads))
    return path


def annotated_examples(scratch: Path, split: str, count: int = 2) -> list[tuple[bytes, dict]]:
    """`count` synthetic images of `split` and their JSON annotations, as (bytes, document)."""
    write_annotated_channel(scratch / split, scratch / f"{split}_annotation", count,
                            seed=3 if split == "train" else 4, prefix=split)
    examples = []
    for path in sorted((scratch / f"{split}_annotation").glob("*.json")):
        document = json.loads(path.read_text())
        examples.append(((scratch / split / document["file"]).read_bytes(), document))
    return examples


def recordio_payloads(examples: list[tuple[bytes, dict]]) -> list[bytes]:
    """The examples as im2rec's packed records (labels normalised to the image size)."""
    records = []
    for index, (image, document) in enumerate(examples):
        size = document["image_size"][0]
        label = [2, 5]
        for box in document["annotations"]:
            label += [box["class_id"], box["left"] / size["width"], box["top"] / size["height"],
                      (box["left"] + box["width"]) / size["width"],
                      (box["top"] + box["height"]) / size["height"]]
        records.append(pack(label, image, index))
    return records


WRITER = Path(__file__).with_name("pipe_writer.py")


def start_pipe_writer(directory: Path, channel: str, passes: Sequence[bytes],
                      delay: float = 0.0):
    """A separate process feeding `passes` through `<channel>_<n>` FIFOs, as SageMaker does."""
    import subprocess
    import sys

    scratch = Path(directory).parent / "pipe_passes"
    scratch.mkdir(parents=True, exist_ok=True)
    files = []
    for number, data in enumerate(passes):
        path = scratch / f"{channel}_{number}.bin"
        path.write_bytes(data)
        files.append(str(path))
    return subprocess.Popen([sys.executable, str(WRITER), str(directory), channel, *files,
                             "--delay", str(delay)])


def sharded_by_key_layout(tmp_path: Path, shares: tuple[int, ...]) -> list[tuple[Paths, dict]]:
    """SageMaker's ShardedByS3Key images (host i gets `shares[i]` of them) beside one shared,
    FullyReplicated annotation prefix (every host gets every annotation)."""
    scratch = tmp_path / "all"
    write_annotated_channel(scratch / "train", scratch / "train_annotation", sum(shares), seed=1)
    images = sorted((scratch / "train").glob("*.jpg"))
    hosts, start = [], 0
    for index, share in enumerate(shares):
        paths = Paths(tmp_path / f"host{index}")
        paths.channel_dir("train").mkdir(parents=True)
        for image in images[start:start + share]:
            shutil.copy(image, paths.channel_dir("train"))
        shutil.copytree(scratch / "train_annotation", paths.channel_dir("train_annotation"))
        start += share
        hosts.append((paths, {"train": ChannelConfig("train", "image/jpeg",
                                                     distribution="ShardedByS3Key"),
                              "train_annotation": ChannelConfig("train_annotation",
                                                                "image/jpeg")}))
    return hosts
