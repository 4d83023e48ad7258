"""Image + JSON channels (one annotation file per image, the SageMaker Object Detection format):
every annotation file and image checked, each problem naming its file and the fix, the result a
list of `Sample`s and a `ChannelReport`.

The annotation object (`image_size` + `annotations`) is also the value of a Ground Truth
bounding-box attribute, so `parse_annotation` serves augmented manifests too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from ssd_sagemaker.data.checks.images import IMAGE_SUFFIXES, BadImage, decode, inspect_bytes
from ssd_sagemaker.data.checks.report import ChannelReport
from ssd_sagemaker.data.checks.samples import (
    Sample,
    class_id_problem,
    fit_boxes,
    is_integer,
    is_number,
    normalised,
)
from ssd_sagemaker.data.formats.protocol import (
    ChannelRead,
    FileChannel,
    Parser,
    ReadContext,
    media_type,
)
from ssd_sagemaker.data.loading.sharding import Shard
from ssd_sagemaker.environment import FULLY_REPLICATED, SHARDED_BY_S3_KEY, ChannelConfig
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.user_files import Boundary, RefusedFile, checked_path, read_file
from ssd_sagemaker.user_json import BadJSON, parse_json, shown

LOG = logging.getLogger(__name__)

REQUIRED_KEYS = ("file", "image_size", "annotations")
BOX_KEYS = ("class_id", "left", "top", "width", "height")
EXAMPLE = ('{"file": "img_0001.jpg", "image_size": [{"width": 500, "height": 400, "depth": 3}], '
           '"annotations": [{"class_id": 0, "left": 111, "top": 134, "width": 61, '
           '"height": 128}]}')
KIND = "image + JSON"
# The largest side a JPEG can have; beyond it boxes divided by the size would round to nothing.
MAX_IMAGE_SIDE = 65_535


@dataclass
class ParsedAnnotation:
    """What one annotation object yielded: pixel boxes in its `image_size`, or problems."""

    width: int = 0
    height: int = 0
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.float32))
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _image_size(image_size: Any, problems: list[str]) -> tuple[int, int] | None:
    entry = image_size[0] if isinstance(image_size, list) and image_size else None
    if not isinstance(entry, dict):
        problems.append(f"\"image_size\" must be a list holding one {{\"width\", \"height\", "
                        f"\"depth\"}} object, got {shown(image_size)}")
        return None
    sizes: list[Any] = [entry.get("width"), entry.get("height")]  # JSON values, checked below
    faults = [f"image_size {key} must be a positive integer of at most {MAX_IMAGE_SIDE}, got "
              f"{shown(value)}" for key, value in zip(("width", "height"), sizes)
              if not is_integer(value) or not 0 < value <= MAX_IMAGE_SIDE]
    problems.extend(faults)
    if faults:
        return None
    return int(sizes[0]), int(sizes[1])


def _boxes(annotations: Any, num_classes: int,
           problems: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Corner boxes in pixels and class ids; every faulty annotation is reported."""
    if not isinstance(annotations, list):
        problems.append(f"\"annotations\" must be a list, got {type(annotations).__name__}")
        return None
    boxes, class_ids, before = [], [], len(problems)
    for index, box in enumerate(annotations):
        where = f"annotation {index}"
        if not isinstance(box, dict):
            problems.append(f"{where} must be an object with {', '.join(BOX_KEYS)}")
            continue
        missing = [key for key in BOX_KEYS if key not in box]
        if missing:
            problems.append(f"{where} is missing the key(s) {', '.join(missing)}")
            continue
        fault = class_id_problem(box["class_id"], num_classes)
        if fault:
            problems.append(f"{where} has {fault}")
        for key in ("left", "top", "width", "height"):
            if not is_number(box[key]):
                problems.append(f"{where} has {key} {shown(box[key])}, which is not a number")
        for key in ("width", "height"):
            if is_number(box[key]) and box[key] <= 0:
                problems.append(f"{where} has {key} {shown(box[key])}; box sizes must be "
                                f"positive")
        if len(problems) == before:
            left, top = float(box["left"]), float(box["top"])
            boxes.append((left, top, left + float(box["width"]), top + float(box["height"])))
            class_ids.append(int(box["class_id"]))
    if len(problems) > before:
        return None
    return (np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            np.asarray(class_ids, dtype=np.int32).reshape(-1))


def parse_annotation(document: Any, num_classes: int) -> ParsedAnnotation:
    """Check an `{"image_size": [...], "annotations": [...]}` object; the checks are
    independent so every fault is reported, and boxes overshooting the image by at most a
    pixel are clipped (a warning)."""
    parsed = ParsedAnnotation()
    if not isinstance(document, dict):
        parsed.problems.append("must hold one JSON object, e.g. " + EXAMPLE)
        return parsed
    missing = [key for key in REQUIRED_KEYS[1:] if key not in document]
    if missing:
        parsed.problems.append(f"is missing the key(s) {', '.join(missing)}")
        return parsed
    size = _image_size(document["image_size"], parsed.problems)
    boxes = _boxes(document["annotations"], num_classes, parsed.problems)
    if size is None or boxes is None:
        return parsed
    parsed.width, parsed.height = size
    names = [f"annotation {i}" for i in range(len(boxes[0]))]
    parsed.boxes, parsed.warnings, errors = fit_boxes(boxes[0], *size, names)
    parsed.problems.extend(errors)
    parsed.class_ids = boxes[1]
    return parsed


def _absolute(file: str) -> bool:
    """An absolute POSIX or Windows path (a Windows one needs a drive or a UNC prefix: the
    pure-path objects are made only then, since they cost more than the rest of the check)."""
    return file.startswith("/") or ((":" in file or file.startswith("\\"))
                                    and PureWindowsPath(file).is_absolute())


def _image_name(file: Any, images: Boundary, problems: list[str],
                absent_ok: bool = False) -> str | None:
    """The image the annotation names, as its normalised path relative to the image channel
    (text: a channel's thousands of images need no Path object each while they are checked),
    refusing paths that leave the channel (by `..` or through a symbolic link) and files
    that are not regular; an absent image is a problem unless `absent_ok` (None then, and no
    problem added)."""
    image_dir = images.folder
    if not isinstance(file, str) or not file.strip():
        problems.append(f"\"file\" must be the image's path relative to the image channel, "
                        f"got {shown(file)}")
        return None
    if _absolute(file):
        problems.append(f"\"file\" {shown(file)} is an absolute path; give the path relative "
                        f"to the image channel {image_dir}")
        return None
    relative = os.path.normpath(file.replace("\\", "/"))
    if relative == ".." or relative.startswith("../"):
        problems.append(f"\"file\" {shown(file)} points outside the image channel {image_dir}; "
                        f"give a path inside it")
        return None
    try:
        checked_path(images.prefix + relative, images)
    except (FileNotFoundError, NotADirectoryError):
        if not absent_ok:
            problems.append(f"\"file\" {shown(file)} does not exist in the image channel "
                            f"{image_dir}")
        return None
    except RefusedFile as refusal:
        problems.append(f"\"file\" {shown(file)} {refusal}")
        return None
    except (OSError, ValueError) as error:  # a name too long, a NUL byte
        reason = getattr(error, "strerror", None) or str(error)
        problems.append(f"\"file\" {shown(file)} is not a usable file name ({reason}); give "
                        f"the image's path relative to the image channel {image_dir}")
        return None
    return relative


# (class_id, name) pairs sorted by id: a category list as checked, comparable and hashable
Categories = tuple[tuple[int, str], ...]
# Category lists checked so far in this process, by their value's repr: converted datasets
# repeat one list in every annotation file, so it is checked once (bounded for hostile data).
_CHECKED_LISTS: dict[str, tuple[Categories, tuple[str, ...]]] = {}
_MAX_CHECKED_LISTS = 64


def _check_categories(categories: Any) -> tuple[Categories, tuple[str, ...]]:
    """The names a `categories` list gives, and its problems."""
    if not isinstance(categories, list):
        return (), ("\"categories\" must be a list of {\"class_id\", \"name\"} objects",)
    names: dict[int, str] = {}
    problems = []
    for index, category in enumerate(categories):
        if (not isinstance(category, dict) or not is_integer(category.get("class_id"))
                or not isinstance(category.get("name"), str)):
            problems.append(f"category {index} must be {{\"class_id\": <integer>, "
                            f"\"name\": <string>}}, got {shown(category)}")
            continue
        names[int(category["class_id"])] = category["name"]
    return tuple(sorted(names.items())), tuple(problems)


def _categories(categories: Any, problems: list[str]) -> Categories:
    """The file's class names (none without `categories`), checked once per distinct list."""
    if categories is None:
        return ()
    key = repr(categories)
    checked = _CHECKED_LISTS.get(key)
    if checked is None:
        checked = _check_categories(categories)
        if len(_CHECKED_LISTS) < _MAX_CHECKED_LISTS:
            _CHECKED_LISTS[key] = checked
    problems.extend(checked[1])
    return checked[0]


def _relative(path: Path, folder: Path) -> str:
    """`path.relative_to(folder).as_posix()`, by slicing the text when it starts with the
    folder's (pathlib costs more than the rest of a file's bookkeeping)."""
    text, prefix = os.fspath(path), os.path.join(os.fspath(folder), "")
    if text.startswith(prefix):
        return text[len(prefix):]
    return path.relative_to(folder).as_posix()


def _load(path: Path, annotations: Boundary) -> tuple[Any, str | None]:
    """The file's JSON value, or what is wrong with it (a link leaving the channel, not a
    regular file, unreadable, not UTF-8, not JSON, too deep, numbers no float holds, lone
    surrogates)."""
    try:
        return parse_json(read_file(path, annotations)), None
    except OSError as error:
        return None, f"cannot be read ({error.strerror})"
    except (RefusedFile, BadJSON) as problem:
        return None, str(problem)


def _check_image(path: Path, parsed: ParsedAnnotation, thorough: bool) -> None:
    """Header (and optionally pixel) checks of the annotated image (`_image_name` checked
    where it leads); its problems and warnings go to the annotation file's entry."""
    try:
        data = read_file(path)
        header = inspect_bytes(data)
        if thorough:
            decode(data)
    except OSError as error:
        parsed.problems.append(f"image {path.name} cannot be read ({error.strerror})")
        return
    except (RefusedFile, BadImage) as error:
        parsed.problems.append(f"image {path.name} {error}")
        return
    if (header.width, header.height) != (parsed.width, parsed.height):
        parsed.warnings.append(f"image_size {parsed.width}x{parsed.height} differs from the "
                               f"image {path.name} ({header.width}x{header.height}); boxes are "
                               f"scaled to the image")


@dataclass
class CheckedFile:
    """One annotation file checked on its own (JSON, boxes, image path, categories, image):
    the part of reading that consults no other file, so validate-data can spread it over
    processes. `fault` alone: the file could not be used at all. The image's verdict is kept
    apart: an image already annotated by an earlier file is not checked."""

    origin: str
    fault: str | None = None
    file: Any = None  # the "file" value as written
    parsed: ParsedAnnotation = field(default_factory=ParsedAnnotation)
    image: str | None = None  # relative to the image channel (`_image_name`)
    on_other_host: bool = False
    categories: Categories = ()
    image_problems: list[str] = field(default_factory=list)
    image_warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FileChecker:
    """Checks one annotation file of a channel pair (picklable: it runs in pool workers).
    `defer_images` (training): the image is not opened here; the loader checks it when used."""

    image_dir: Path
    annotation_dir: Path
    num_classes: int
    thorough: bool
    images_elsewhere: bool
    defer_images: bool = False
    images: Boundary = field(init=False)  # resolved once: a channel holds thousands of files
    annotations: Boundary = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", Boundary(self.image_dir, "the image channel"))
        object.__setattr__(self, "annotations", Boundary(
            self.annotation_dir, f"the {self.annotation_dir.name} channel"))

    def __call__(self, path: Path) -> CheckedFile:
        origin = f"{self.annotation_dir.name}/{_relative(path, self.annotation_dir)}"
        document, fault = _load(path, self.annotations)
        if fault:
            return CheckedFile(origin, fault)
        if not isinstance(document, dict) or "file" not in document:
            missing = "file" if isinstance(document, dict) else "a JSON object"
            return CheckedFile(origin, f"is missing the key(s) {missing}; every file needs "
                                       f"{', '.join(REQUIRED_KEYS)}, e.g. {EXAMPLE}")
        parsed = parse_annotation(document, self.num_classes)
        before = len(parsed.problems)
        image = _image_name(document["file"], self.images, parsed.problems,
                            self.images_elsewhere)
        checked = CheckedFile(origin, None, document["file"], parsed, image,
                              image is None and len(parsed.problems) == before)
        checked.categories = _categories(document.get("categories"), parsed.problems)
        if image is not None and not parsed.problems and not self.defer_images:
            verdict = ParsedAnnotation(parsed.width, parsed.height)
            _check_image(self.image_dir / image, verdict, self.thorough)
            checked.image_problems, checked.image_warnings = verdict.problems, verdict.warnings
        return checked


class _PairReader:
    """Takes the checked annotation files of a channel pair in order, remembering what the
    files taken so far claimed: the image each annotates (one annotation per image) and the
    name each class id was given first (one name per class)."""

    def __init__(self, image_dir: Path, report: ChannelReport):
        self.image_dir, self.report = image_dir, report
        self.names: dict[int, tuple[str, str]] = {}  # class_id -> (name, file naming it first)
        self.claimed: dict[str, str] = {}  # image (relative) -> the annotation file claiming it
        # a category list's conflicts with the names taken before it: the same every time the
        # list comes again (its ids are then all named, and a name once taken never changes)
        self.conflicts: dict[Categories, list[str]] = {}

    @property
    def class_names(self) -> dict[int, str]:
        return {class_id: name for class_id, (name, _) in sorted(self.names.items())}

    def _conflicts(self, categories: Categories, origin: str) -> list[str]:
        """The names of `categories` taken (first come, first named); a problem for each name
        that differs from the one its class was given first."""
        known = self.conflicts.get(categories)
        if known is not None:
            return known
        problems = []
        for class_id, class_name in categories:
            first = self.names.setdefault(class_id, (class_name, origin))
            if first[0] != class_name:
                problems.append(f"category name {shown(class_name)} for class_id {class_id} "
                                f"conflicts with {shown(first[0])} in {first[1]}; use one "
                                f"name per class")
        self.conflicts[categories] = problems
        return problems

    def take(self, checked: CheckedFile) -> Sample | None:
        """The sample of one checked annotation file, or None (its problems in the report)."""
        report, origin, parsed = self.report, checked.origin, checked.parsed
        if checked.fault:
            report.error(origin, checked.fault)
            return None
        image = checked.image
        if image is not None and image in self.claimed:
            parsed.problems.append(f"\"file\" {shown(checked.file)} is already annotated by "
                                   f"{self.claimed[image]}; keep one annotation per image")
        elif image is not None and not parsed.problems:
            parsed.problems.extend(checked.image_problems)
            parsed.warnings.extend(checked.image_warnings)
        report.examined()
        parsed.problems.extend(self._conflicts(checked.categories, origin))
        if checked.on_other_host:  # its class names still count: every host exports the same
            report.elsewhere += 1
            return None
        for warning in parsed.warnings:
            report.warn(origin, warning)
        if image is not None:
            self.claimed.setdefault(image, origin)
        for problem in parsed.problems:
            report.error(origin, problem)
        if parsed.problems:
            return None
        assert image is not None  # without one, it was elsewhere or a problem said why
        return Sample(origin=f"{self.image_dir.name}/{image}", image=self.image_dir / image,
                      boxes=normalised(parsed.boxes, parsed.width, parsed.height),
                      class_ids=parsed.class_ids)


def _warn_unannotated(image_dir: Path, annotation_dir: Path, claimed: Mapping[str, str],
                      report: ChannelReport) -> int:
    """Warn of every image no annotation file claimed (left out); how many."""
    unannotated = sorted(path for path in image_dir.rglob("*")
                         if path.suffix.lower() in IMAGE_SUFFIXES
                         and _relative(path, image_dir) not in claimed
                         and path.is_file()) if image_dir.is_dir() else []
    for path in unannotated:
        relative = _relative(path, image_dir)
        report.warn(f"{image_dir.name}/{relative}",
                    f"has no annotation file (expected e.g. {annotation_dir.name}/"
                    f"{PurePosixPath(relative).with_suffix('.json')}); left out")
    return len(unannotated)


def read_annotated_channel(image_dir: Path, annotation_dir: Path, context: ReadContext,
                           images_elsewhere: bool = False, shard: Shard = Shard()
                           ) -> FileChannel:
    """Every `*.json` under `annotation_dir` (sorted, so the order is reproducible) as samples
    of the images in `image_dir`, class names from the files' `categories`. Invalid files are
    reported, not raised: the caller decides with `report.check()`. `thorough` also decodes
    every image (validate-data); `context.defer_images` (training) opens no image, leaving its
    checks to the loader.
    `images_elsewhere`: the images are sharded among hosts (ShardedByS3Key) and the
    annotations are not, so an annotation whose image is absent is another host's: skipped
    and counted, not an error (its host checks it).
    `shard`: this host's part of a FullyReplicated channel, chosen from the sorted file names
    before any file is opened (file `index`, `index + count`, ...); images no annotation
    claims are then not looked for (claims of other hosts' files are unknown)."""
    image_dir, annotation_dir = Path(image_dir), Path(annotation_dir)
    report = context.report
    files = sorted(annotation_dir.rglob("*.json")) if annotation_dir.is_dir() else []
    if not files:
        raise ClientError(
            f"The {annotation_dir.name} channel ({annotation_dir}) holds no JSON annotation "
            f"files; it needs one <image basename>.json per image of the {image_dir.name} "
            f"channel, e.g. {EXAMPLE}"
        )
    share = files[shard.index::shard.count]
    reader = _PairReader(image_dir, report)
    check = FileChecker(image_dir, annotation_dir, context.num_classes, context.thorough,
                        images_elsewhere, context.defer_images)
    samples = [sample for checked in context.map_in_order(check, share)
               if (sample := reader.take(checked)) is not None]
    unannotated = (_warn_unannotated(image_dir, annotation_dir, reader.claimed, report)
                   if shard.count == 1 else 0)
    report.found = len(share) + unannotated
    report.used = len(samples)
    report.skipped = unannotated + report.elsewhere
    return FileChannel(samples, reader.class_names, report,
                       total=len(files) if shard.count > 1 else None)


class ImageFormat:
    """Images with one JSON annotation each in the `<channel>_annotation` channel, File mode."""

    kind = KIND
    streams = False
    readme_row = ("images + one JSON annotation per image",
                  "`ContentType` `image/jpeg`, `image/png` or `application/x-image`, plus a "
                  "`<channel>_annotation` channel", "File")
    declaration = ("image/jpeg, image/png or application/x-image (images with a "
                   "'{channel}_annotation' channel of JSON files)")
    content_types = frozenset({"application/x-image", "image/jpeg", "image/png", "image/jpg"})

    def claims(self, config: ChannelConfig) -> bool:
        return not config.attribute_names and media_type(config) in self.content_types

    def check(self, channels: Mapping[str, ChannelConfig], name: str) -> None:
        annotation = f"{name}_annotation"
        if annotation not in channels:
            raise ClientError(
                f"Channel '{name}' holds images, so the '{annotation}' channel with one JSON "
                f"annotation per image is required; it is missing from the job's channels "
                f"({', '.join(sorted(channels))}).")

    def read_files(self, request: ChannelRead) -> FileChannel:
        annotation = f"{request.name}_annotation"
        return read_annotated_channel(
            request.directory, request.paths.channel_dir(annotation), request.context(KIND),
            images_elsewhere=request.hosts > 1
            and request.config.distribution == SHARDED_BY_S3_KEY
            and request.channels[annotation].distribution == FULLY_REPLICATED,
            shard=request.shard if request.config.distribution == FULLY_REPLICATED
            else Shard())

    def stream_parser(self, request: ChannelRead) -> Parser:
        raise NotImplementedError("image + JSON channels need File mode (streams is False)")


FORMAT = ImageFormat()
