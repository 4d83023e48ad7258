"""`convert`: bring the common datasets to this algorithm's channels. Reads COCO JSON
(`instances_*.json`) or Pascal VOC XML (one file per image) and writes either the image + JSON
annotation layout (`<output>/<channel>/` images, `<output>/<channel>_annotation/` one JSON each)
or RecordIO (`<output>/<channel>/<channel>.rec` + `.idx`, im2rec's packed-label layout
`[2, 6, (class, xmin, ymin, xmax, ymax, difficult)*]`, image bytes copied unchanged).

Class ids become consecutive from 0: COCO category ids in increasing order (all of the file's
categories), VOC names in alphabetical order of the classes present in the files converted, so
train and validation converted separately may number them differently. A fixed class list
(`classes`, or `classes_from` an annotation file of an earlier conversion) makes the ids the
same for every channel; the summary says which rule gave the ids. Boxes are clipped to the
image; COCO crowd regions and empty boxes are left out (counted in the summary).
"""

from __future__ import annotations

import json
import logging
import shutil
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssd_sagemaker.data.checks.images import BadImage, inspect_file
from ssd_sagemaker.data.formats.recordio import pack, write_record
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.progress import Progress

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConvertedImage:
    relative: str  # path below the image folder, kept in the output
    path: Path
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) pixel corners
    class_ids: np.ndarray  # (N,)
    difficult: np.ndarray  # (N,) bool


@dataclass
class Dataset:
    images: list[ConvertedImage] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count
    changed: dict[str, int] = field(default_factory=dict)  # what was altered -> count
    class_rule: str = ""  # how the class ids were chosen, for the summary
    remarks: list[str] = field(default_factory=list)  # what the output format cannot hold

    def drop(self, reason: str, count: int = 1) -> None:
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + count

    def change(self, what: str, count: int = 1) -> None:
        if count:
            self.changed[what] = self.changed.get(what, 0) + count

    def summary(self) -> str:
        """Counts, classes, and everything left out or altered: nothing is lost unsaid."""
        objects = sum(len(image.class_ids) for image in self.images)
        dropped = "; ".join(f"{count} {reason}" for reason, count in self.dropped.items())
        changed = "; ".join(f"{count} {what}" for what, count in self.changed.items())
        return (f"{len(self.images)} images, {objects} objects, {len(self.class_names)} classes "
                f"(num_classes={len(self.class_names)}): {', '.join(self.class_names)}"
                + (f"; left out: {dropped}" if dropped else "")
                + (f"; changed: {changed}" if changed else "")
                + "".join(f"; {remark}" for remark in self.remarks)
                + (f"; class ids: {self.class_rule}" if self.class_rule else ""))


def _image(image_dir: Path, relative: str, dataset: Dataset) -> tuple[Path, int, int] | None:
    path = image_dir / relative
    try:
        header = inspect_file(path)
    except BadImage as error:
        LOG.warning("%s: %s; left out", path, error)
        dataset.drop("unreadable or missing images")
        return None
    return path, header.width, header.height


def _clipped(boxes: Sequence[tuple[float, ...]], width: int, height: int, dataset: Dataset
             ) -> tuple[np.ndarray, np.ndarray]:
    given = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    array = np.clip(given, 0, [width, height, width, height])
    keep = (array[:, 2] > array[:, 0]) & (array[:, 3] > array[:, 1])
    dataset.drop("empty boxes", int((~keep).sum()))
    dataset.change("boxes overshooting their image, clipped to it",
                   int(((array != given).any(axis=1) & keep).sum()))
    return array, keep


GIVEN_RULE = "in the order given (--classes or --classes-from), the same for every channel"


def classes_from(path: Path) -> list[str]:
    """Class names in id order from a JSON file's `categories` (`[{"class_id", "name"}]`, as
    in every annotation file this converter writes), so another channel gets the same ids."""
    try:
        categories = json.loads(Path(path).read_text(encoding="utf-8"))["categories"]
        names = {int(c["class_id"]): str(c["name"]) for c in categories}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ClientError(f"--classes-from {path}: expected a JSON annotation file with "
                          f"\"categories\": [{{\"class_id\": 0, \"name\": ...}}, ...] (any "
                          f"annotation file of an earlier conversion) ({error}).") from None
    if sorted(names) != list(range(len(names))):
        raise ClientError(f"--classes-from {path}: the class ids {sorted(names)} are not "
                          f"0..{len(names) - 1}.")
    return [names[i] for i in range(len(names))]


def _fixed_classes(present: set[str], classes: Sequence[str]) -> list[str]:
    unknown = sorted(present - set(classes))
    if unknown:
        raise ClientError(f"the source names classes missing from the given class list "
                          f"({', '.join(classes)}): {', '.join(unknown)}; add them or omit "
                          f"--classes/--classes-from.")
    return list(classes)


def read_coco(annotation_file: Path, image_dir: Path, classes: Sequence[str] = ()) -> Dataset:
    """A COCO detection file (`images`, `annotations`, `categories`); `classes` fixes the
    ids by name."""
    try:
        document = json.loads(Path(annotation_file).read_text(encoding="utf-8"))
        images, annotations = document["images"], document["annotations"]
        categories = sorted(document["categories"], key=lambda c: c["id"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ClientError(f"{annotation_file} is not a COCO detection file with images, "
                          f"annotations and categories ({error}).") from None
    names = [str(c["name"]) for c in categories]
    if classes:
        dataset = Dataset(class_names=_fixed_classes(set(names), classes),
                          class_rule=GIVEN_RULE)
        class_of = {c["id"]: dataset.class_names.index(str(c["name"])) for c in categories}
    else:
        dataset = Dataset(class_names=names,
                          class_rule="this file's category ids in increasing order (every "
                                     "category listed, used or not)")
        class_of = {c["id"]: index for index, c in enumerate(categories)}
    by_image: dict[int, list[dict]] = {}
    image_ids = {entry["id"] for entry in images}
    for annotation in annotations:
        if annotation.get("image_id") not in image_ids:
            dataset.drop("boxes of an image_id missing from images")
            continue
        if annotation.get("iscrowd"):
            dataset.drop("crowd regions")
            continue
        if annotation.get("category_id") not in class_of:
            dataset.drop("boxes of a category_id missing from categories")
            continue
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    for entry in sorted(images, key=lambda e: e["file_name"]):
        found = _image(Path(image_dir), entry["file_name"], dataset)
        if found is None:
            continue
        path, width, height = found
        objects = by_image.get(entry["id"], [])
        corners = [(a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                    a["bbox"][1] + a["bbox"][3]) for a in objects]
        boxes, keep = _clipped(corners, width, height, dataset)
        ids = np.array([class_of[a["category_id"]] for a in objects], dtype=np.int32)
        dataset.images.append(ConvertedImage(entry["file_name"], path, width, height,
                                             boxes[keep], ids[keep],
                                             np.zeros(int(keep.sum()), dtype=bool)))
    return dataset


def _coordinate(box: ElementTree.Element, key: str) -> float:
    text = box.findtext(key)
    if text is None:
        raise ValueError(f"a <bndbox> has no <{key}>")
    return float(text)


def _voc_objects(root: ElementTree.Element) -> list[tuple[str, tuple[float, ...], bool]]:
    objects: list[tuple[str, tuple[float, ...], bool]] = []
    for item in root.iter("object"):
        box = item.find("bndbox")
        if box is None:
            raise ValueError("an <object> has no <bndbox>")
        xmin, ymin, xmax, ymax = (_coordinate(box, key) for key in
                                  ("xmin", "ymin", "xmax", "ymax"))
        # VOC pixel indices are 1-based and inclusive.
        corners = (xmin - 1, ymin - 1, xmax, ymax)
        objects.append((item.findtext("name", "").strip(), corners,
                        item.findtext("difficult", "0").strip() == "1"))
    return objects


def read_voc(annotation_dir: Path, image_dir: Path, classes: Sequence[str] = ()) -> Dataset:
    """Pascal VOC XML files (any folder of `*.xml`), images named by their `filename`."""
    files = sorted(Path(annotation_dir).rglob("*.xml"))
    if not files:
        raise ClientError(f"{annotation_dir} holds no Pascal VOC .xml annotation files.")
    parsed = []
    for path in files:
        try:
            root = ElementTree.parse(path).getroot()
            parsed.append((root.findtext("filename", "").strip(), _voc_objects(root)))
        except (ElementTree.ParseError, AttributeError, TypeError, ValueError) as error:
            raise ClientError(f"{path} is not a Pascal VOC annotation ({error}); each object "
                              f"needs <name> and <bndbox> with xmin, ymin, xmax, ymax.") from None
    present = {name for _, objects in parsed for name, _, _ in objects}
    if classes:
        dataset = Dataset(class_names=_fixed_classes(present, classes), class_rule=GIVEN_RULE)
    else:
        dataset = Dataset(class_names=sorted(present), class_rule=(
            "alphabetical order of the classes present in these files; another channel "
            "converted separately gets other ids unless converted with --classes-from an "
            "annotation file of this one"))
    names = dataset.class_names
    for filename, objects in parsed:
        found = _image(Path(image_dir), filename, dataset)
        if found is None:
            continue
        path, width, height = found
        boxes, keep = _clipped([corners for _, corners, _ in objects], width, height, dataset)
        ids = np.array([names.index(name) for name, _, _ in objects], dtype=np.int32)
        difficult = np.array([flag for _, _, flag in objects], dtype=bool)
        dataset.images.append(ConvertedImage(filename, path, width, height, boxes[keep],
                                             ids[keep], difficult[keep]))
    return dataset


def write_json_channels(dataset: Dataset, output: Path, channel: str) -> tuple[Path, Path]:
    """`<output>/<channel>/` (images copied) and `<output>/<channel>_annotation/`."""
    image_root, annotation_root = Path(output) / channel, Path(output) / f"{channel}_annotation"
    dataset.change("difficult boxes written as ordinary boxes (the JSON annotation has no "
                   "difficult flag; --to recordio keeps it)",
                   sum(int(image.difficult.sum()) for image in dataset.images))
    categories = [{"class_id": i, "name": name} for i, name in enumerate(dataset.class_names)]
    with Progress(f"convert: writing {channel}", len(dataset.images), "image", LOG) as progress:
        for image in dataset.images:
            _write_json_example(image, image_root, annotation_root, categories)
            progress.advance()
    return image_root, annotation_root


def _write_json_example(image: ConvertedImage, image_root: Path, annotation_root: Path,
                        categories: list[dict]) -> None:
    """One image copied into the channel and its JSON annotation written."""
    target = image_root / image.relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image.path, target)
    annotation = {
        "file": image.relative,
        "image_size": [{"width": image.width, "height": image.height, "depth": 3}],
        "annotations": [{"class_id": int(c), "left": float(b[0]), "top": float(b[1]),
                         "width": float(b[2] - b[0]), "height": float(b[3] - b[1])}
                        for c, b in zip(image.class_ids, image.boxes)],
        "categories": categories,
    }
    path = (annotation_root / image.relative).with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(annotation) + "\n", encoding="utf-8")


def write_recordio(dataset: Dataset, output: Path, channel: str) -> Path:
    """`<output>/<channel>/<channel>.rec` and its `.idx`; RecordIO holds no class names, so
    they go to `<output>/<channel>_classes.json` beside the channel (inside it, a Pipe-mode
    stream would carry it as a foreign object), for `--classes-from` and for the user."""
    directory = Path(output) / channel
    directory.mkdir(parents=True, exist_ok=True)
    names = Path(output) / f"{channel}_classes.json"
    names.write_text(json.dumps({"categories": [{"class_id": i, "name": name} for i, name in
                                                enumerate(dataset.class_names)]}) + "\n",
                     encoding="utf-8")
    dataset.remarks.append(f"RecordIO carries no class names: a model trained on it names "
                           f"them class_0, class_1, ...; the names are in {names} (use it with "
                           f"--classes-from)")
    rec_path = directory / f"{channel}.rec"
    with open(rec_path, "wb") as rec, open(rec_path.with_suffix(".idx"), "w") as idx:
        offset = 0
        with Progress(f"convert: writing {rec_path.name}", len(dataset.images), "image",
                      LOG) as progress:
            for index, image in enumerate(dataset.images):
                scale = np.array([image.width, image.height] * 2, dtype=np.float32)
                objects = np.hstack([image.class_ids[:, None], image.boxes / scale,
                                     image.difficult[:, None]]).astype(np.float32)
                label = np.concatenate([[2, 6], objects.ravel()])
                idx.write(f"{index}\t{offset}\n")
                offset += write_record(rec, pack(label, image.path.read_bytes(), index))
                progress.advance()
    return rec_path
