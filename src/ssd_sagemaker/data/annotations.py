"""Read an image channel and its JSON annotation channel (one annotation file per image, the
SageMaker Object Detection format) into typed samples, refusing invalid files with one error
that lists every problem found, each naming the file and the fix.

Images are only checked for existence here; decoding them is the loader's job.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from ssd_sagemaker.errors import ClientError

LOG = logging.getLogger(__name__)

# Problems listed in the error; the rest are counted (FailureReason keeps only 1024 characters).
MAX_LISTED_PROBLEMS = 20
REQUIRED_KEYS = ("file", "image_size", "annotations")
BOX_KEYS = ("class_id", "left", "top", "width", "height")
EXAMPLE = ('{"file": "img_0001.jpg", "image_size": [{"width": 500, "height": 400, "depth": 3}], '
           '"annotations": [{"class_id": 0, "left": 111, "top": 134, "width": 61, '
           '"height": 128}]}')


@dataclass(frozen=True)
class Sample:
    """One annotated image: boxes in the annotated image size's pixels, corners form."""

    image_path: Path
    width: int
    height: int
    boxes: np.ndarray  # float32 (N, 4): xmin, ymin, xmax, ymax
    class_ids: np.ndarray  # int32 (N,)


@dataclass(frozen=True)
class AnnotatedChannel:
    """All samples of a channel pair, plus class names from the files' `categories`."""

    samples: tuple[Sample, ...]
    class_names: dict[int, str]


@dataclass
class _Parsed:
    """What one annotation file yielded; `problems` empty means `sample` is usable."""

    sample: Sample | None = None
    categories: dict[int, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value: Any) -> bool:
    """JSON integers, and floats with an integral value (some tools write 2.0)."""
    return _is_number(value) and float(value).is_integer()


def _image_path(file: Any, image_dir: Path, problems: list[str]) -> Path | None:
    """The image the annotation names, refusing paths that leave the image channel."""
    if not isinstance(file, str) or not file.strip():
        problems.append(f"\"file\" must be the image's path relative to the image channel, "
                        f"got {file!r}")
        return None
    if PurePosixPath(file).is_absolute() or PureWindowsPath(file).is_absolute():
        problems.append(f"\"file\" {file!r} is an absolute path; give the path relative to the "
                        f"image channel {image_dir}")
        return None
    relative = os.path.normpath(file.replace("\\", "/"))
    if relative == ".." or relative.startswith("../"):
        problems.append(f"\"file\" {file!r} points outside the image channel {image_dir}; give "
                        f"a path inside it")
        return None
    path = image_dir / relative
    if not path.is_file():
        problems.append(f"\"file\" {file!r} does not exist in the image channel {image_dir}")
        return None
    return path


def _image_size(image_size: Any, problems: list[str]) -> tuple[int, int] | None:
    entry = image_size[0] if isinstance(image_size, list) and image_size else None
    if not isinstance(entry, dict):
        problems.append(f"\"image_size\" must be a list holding one {{\"width\", \"height\", "
                        f"\"depth\"}} object, got {image_size!r}")
        return None
    sizes = [entry.get("width"), entry.get("height")]
    faults = [f"image_size {key} must be a positive integer, got {value!r}"
              for key, value in zip(("width", "height"), sizes)
              if not _is_integer(value) or value <= 0]
    problems.extend(faults)
    if faults:
        return None
    return int(sizes[0]), int(sizes[1])


def _boxes(annotations: Any, num_classes: int,
           problems: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Corner boxes and class ids; every faulty annotation is reported, not just the first."""
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
        class_id = box["class_id"]
        if not _is_integer(class_id) or not 0 <= class_id < num_classes:
            problems.append(f"{where} has class_id {class_id!r}; class ids must be integers in "
                            f"[0, {num_classes}) for num_classes={num_classes}")
        for key in ("left", "top", "width", "height"):
            if not _is_number(box[key]):
                problems.append(f"{where} has {key} {box[key]!r}, which is not a number")
        for key in ("width", "height"):
            if _is_number(box[key]) and box[key] <= 0:
                problems.append(f"{where} has {key} {box[key]!r}; box sizes must be positive")
        if len(problems) == before:
            left, top = float(box["left"]), float(box["top"])
            boxes.append((left, top, left + float(box["width"]), top + float(box["height"])))
            class_ids.append(int(class_id))
    if len(problems) > before:
        return None
    return (np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            np.asarray(class_ids, dtype=np.int32).reshape(-1))


def _categories(categories: Any, problems: list[str]) -> dict[int, str]:
    if categories is None:
        return {}
    names: dict[int, str] = {}
    if not isinstance(categories, list):
        problems.append(f"\"categories\" must be a list of {{\"class_id\", \"name\"}} objects")
        return names
    for index, category in enumerate(categories):
        if (not isinstance(category, dict) or not _is_integer(category.get("class_id"))
                or not isinstance(category.get("name"), str)):
            problems.append(f"category {index} must be {{\"class_id\": <integer>, "
                            f"\"name\": <string>}}, got {category!r}")
            continue
        names[int(category["class_id"])] = category["name"]
    return names


def _parse_file(path: Path, image_dir: Path, num_classes: int) -> _Parsed:
    """Check one annotation file; the checks are independent so all faults are reported."""
    problems: list[str] = []
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        return _Parsed(problems=[f"is not valid JSON ({error.msg} at line {error.lineno} "
                                 f"column {error.colno})"])
    except (OSError, UnicodeDecodeError) as error:
        return _Parsed(problems=[f"cannot be read as UTF-8 text ({error})"])
    if not isinstance(document, dict):
        return _Parsed(problems=["must hold one JSON object, e.g. " + EXAMPLE])
    missing = [key for key in REQUIRED_KEYS if key not in document]
    if missing:
        return _Parsed(problems=[f"is missing the key(s) {', '.join(missing)}; every file "
                                 f"needs {', '.join(REQUIRED_KEYS)}"])
    image_path = _image_path(document["file"], image_dir, problems)
    size = _image_size(document["image_size"], problems)
    boxes = _boxes(document["annotations"], num_classes, problems)
    categories = _categories(document.get("categories"), problems)
    if problems or image_path is None or size is None or boxes is None:
        return _Parsed(problems=problems)
    sample = Sample(image_path=image_path, width=size[0], height=size[1], boxes=boxes[0],
                    class_ids=boxes[1])
    return _Parsed(sample=sample, categories=categories)


def _merge_categories(parsed: dict[str, _Parsed]) -> dict[int, str]:
    """One name per class id across files; a conflicting name is a problem of the later file."""
    names: dict[int, tuple[str, str]] = {}
    for name, result in parsed.items():
        for class_id, class_name in sorted(result.categories.items()):
            first = names.setdefault(class_id, (class_name, name))
            if first[0] != class_name:
                result.problems.append(f"category name {class_name!r} for class_id "
                                       f"{class_id} conflicts with {first[0]!r} in "
                                       f"{first[1]}; use one name per class")
    return {class_id: value[0] for class_id, value in sorted(names.items())}


def _raise_problems(annotation_dir: Path, problems: list[str], files: int) -> None:
    plural = "file" if files == 1 else "files"
    lines = [f"The {annotation_dir.name} channel has {files} invalid annotation {plural}:"]
    lines += [f"  {problem}" for problem in problems[:MAX_LISTED_PROBLEMS]]
    if len(problems) > MAX_LISTED_PROBLEMS:
        lines.append(f"  ... and {len(problems) - MAX_LISTED_PROBLEMS} more")
    raise ClientError("\n".join(lines))


def read_annotated_channel(image_dir: Path, annotation_dir: Path,
                           num_classes: int) -> AnnotatedChannel:
    """Every `*.json` under `annotation_dir` (sorted, so the order is reproducible) as samples
    of the images in `image_dir`; raise one ClientError listing all invalid files."""
    image_dir, annotation_dir = Path(image_dir), Path(annotation_dir)
    files = sorted(annotation_dir.rglob("*.json")) if annotation_dir.is_dir() else []
    if not files:
        raise ClientError(
            f"The {annotation_dir.name} channel ({annotation_dir}) holds no JSON annotation "
            f"files; it needs one <image basename>.json per image of the {image_dir.name} "
            f"channel, e.g. {EXAMPLE}"
        )
    parsed = {path.relative_to(annotation_dir).as_posix(): _parse_file(path, image_dir,
                                                                        num_classes)
              for path in files}
    class_names = _merge_categories(parsed)
    problems = [f"{name}: {problem}" for name, result in parsed.items()
                for problem in result.problems]
    bad_files = {name for name, result in parsed.items() if result.problems}
    if problems:
        _raise_problems(annotation_dir, problems, len(bad_files))
    samples = tuple(result.sample for result in parsed.values() if result.sample is not None)
    LOG.info("%s: %d annotated images, %d objects", annotation_dir.name, len(samples),
             sum(len(sample.class_ids) for sample in samples))
    return AnnotatedChannel(samples=samples, class_names=class_names)
