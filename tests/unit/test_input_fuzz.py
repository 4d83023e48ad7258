"""Property-based fuzzing of everything that reads the user's JSON: the three config files
(hyperparameters.json, inputdataconfig.json, resourceconfig.json), the hyperparameter parser,
JSON annotation files and augmented-manifest records.

The property: hostile input (any JSON value, any bytes, other encodings, 100,000-deep
nesting, 5,000-digit or float-overflowing numbers, NaN, lone surrogates, 5,000-character file
names) is either accepted or refused with a `ClientError` whose message names the culprit (the
file, the key, the example), which `report_job_error` turns into exit 1 and a non-empty failure
file that is not a traceback. Never another exception type.

Derandomized (the same examples every run) and bounded: about a minute in all.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reading import read_images
from ssd_sagemaker.data.checks.report import ChannelReport
from ssd_sagemaker.data.formats.image_json import parse_annotation
from ssd_sagemaker.data.formats.manifest import Attributes, parse_entries
from ssd_sagemaker.data.formats.protocol import ReadContext
from ssd_sagemaker.environment import (
    Paths,
    read_channels,
    read_hyperparameters,
    read_resource_config,
)
from ssd_sagemaker.errors import ClientError, report_job_error
from ssd_sagemaker.hyperparameters import SPECS, parse_hyperparameters
from ssd_sagemaker.model.backbones import VGG16_CONVS
from ssd_sagemaker.safe_regex import compile_regex

FUZZ = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

# --- strategies -----------------------------------------------------------------------------
# Text with every code point, lone surrogates included (st.text() leaves them out by default).
ANY_TEXT = st.text(st.characters(blacklist_categories=()), max_size=12)
HOSTILE_TEXT = st.one_of(
    ANY_TEXT, st.sampled_from(["", "  ", "null", '""', "\udead", "a\x00b", "x" * 5000,
                               "1" * 5000, "[" * 5000, "1e400", "NaN", "-0", "..", "../x"]))
NUMBERS = st.one_of(st.integers(), st.integers(-10**400, 10**400), st.floats(),
                    st.sampled_from([0, -1, 2**31, 2**63, 10**308, 1e308, 1e-320]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, HOSTILE_TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(ANY_TEXT, inner, max_size=3), max_leaves=12)


def _encoded(value: Any) -> bytes:
    """JSON as Python writes it: lone surrogates as \\udead escapes, NaN and Infinity bare."""
    return json.dumps(value).encode("utf-8")


def _raw_surrogates(value: Any) -> bytes:
    """JSON written without escapes: lone surrogates become bytes that are not UTF-8."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _nested(depth: int, open_: bytes, close: bytes) -> bytes:
    return open_ * depth + b"1" + close * depth


ENCODINGS = st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252", "utf-8-sig"])


def _leaf_paths(value: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _leaf_paths(item, path + (key,))]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _leaf_paths(item, path + (i,))]
    return [path]


def _replaced(value: Any, path: tuple, leaf: Any) -> Any:
    if not path:
        return leaf
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], leaf)
    return copy


def one_leaf_replaced(valid: Any) -> st.SearchStrategy[Any]:
    """`valid` itself, or with one value replaced by a hostile one: reaches the checks behind
    the structural ones."""
    return st.one_of(st.just(valid), st.builds(
        lambda path, leaf: _replaced(valid, path, leaf),
        st.sampled_from(_leaf_paths(valid)), st.one_of(SCALARS, VALUES)))


def documents(shaped: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Bytes of a config or annotation file: `shaped` values (the right structure with hostile
    leaves), arbitrary JSON values, other encodings, deep nesting, huge numbers, raw bytes."""
    return st.one_of(
        shaped.map(_encoded), shaped.map(_raw_surrogates), VALUES.map(_encoded),
        st.tuples(shaped, ENCODINGS).map(
            lambda pair: json.dumps(pair[0], ensure_ascii=False).encode(pair[1], "replace")),
        st.integers(1, 100_000).map(lambda depth: _nested(depth, b"[", b"]")),
        st.integers(1, 50_000).map(lambda depth: _nested(depth, b'{"a":', b"}")),
        st.integers(300, 6000).map(lambda digits: b'{"num_classes": ' + b"9" * digits + b"}"),
        st.sampled_from([b"", b"NaN", b'{"x": Infinity}', b'{"x": 1e400}', b'{"x": -1e999}',
                         b'"\\udead"', b'{"\\udead": 1}', b"\xef\xbb\xbf{}", b"\x00",
                         b'{"a": 1} trailing', b"\xff\xfe{\x00}\x00"]),
        st.binary(max_size=64),
    )


HYPERPARAMETER_NAMES = st.sampled_from([spec.name for spec in SPECS])
VALID_HYPERPARAMETERS = {"num_classes": "3", "num_training_samples": "100", "epochs": "2",
                         "lr_scheduler_step": "1, 2", "freeze_layer_pattern": "^conv1_",
                         "base_network": "resnet-50", "learning_rate": 0.01}
HYPERPARAMETERS = one_leaf_replaced(VALID_HYPERPARAMETERS) | st.dictionaries(
    st.one_of(HYPERPARAMETER_NAMES, ANY_TEXT),
    st.one_of(SCALARS, VALUES, VALUES.map(json.dumps), HOSTILE_TEXT), max_size=6)
CHANNEL_FIELDS = st.fixed_dictionaries({}, optional={
    "ContentType": st.one_of(st.sampled_from(["image/jpeg", "application/x-recordio"]), VALUES),
    "TrainingInputMode": st.one_of(st.sampled_from(["File", "Pipe"]), VALUES),
    "S3DistributionType": st.one_of(st.just("FullyReplicated"), VALUES),
    "RecordWrapperType": st.one_of(st.sampled_from(["None", "RecordIO"]), VALUES),
    "AttributeNames": st.one_of(st.just(["source-ref", "bounding-box"]), VALUES)})
VALID_CHANNELS = {"train": {"ContentType": "application/x-recordio", "TrainingInputMode": "Pipe",
                            "S3DistributionType": "ShardedByS3Key",
                            "RecordWrapperType": "RecordIO",
                            "AttributeNames": ["source-ref", "bounding-box"]},
                  "validation": {"ContentType": "image/jpeg"}}
CHANNELS = one_leaf_replaced(VALID_CHANNELS) | st.dictionaries(
    st.one_of(st.sampled_from(["train", "validation", "model"]), HOSTILE_TEXT),
    st.one_of(CHANNEL_FIELDS, VALUES), max_size=3)
VALID_RESOURCES = {"current_host": "algo-2", "hosts": ["algo-1", "algo-2"],
                   "network_interface_name": "eth0"}
RESOURCES = one_leaf_replaced(VALID_RESOURCES) | st.fixed_dictionaries({}, optional={
    "current_host": st.one_of(st.just("algo-1"), SCALARS, VALUES),
    "hosts": st.one_of(st.just(["algo-1", "algo-2"]), st.lists(SCALARS, max_size=3), VALUES),
    "network_interface_name": st.one_of(st.just("eth0"), SCALARS, VALUES)})

BOX_NUMBER = st.one_of(st.integers(-5, 70), NUMBERS, SCALARS)
BOX = st.fixed_dictionaries({"class_id": BOX_NUMBER, "left": BOX_NUMBER, "top": BOX_NUMBER,
                             "width": BOX_NUMBER, "height": BOX_NUMBER})
ANNOTATION_OBJECT = st.fixed_dictionaries({
    "image_size": st.one_of(st.lists(st.fixed_dictionaries(
        {"width": BOX_NUMBER, "height": BOX_NUMBER, "depth": BOX_NUMBER}), max_size=2), VALUES),
    "annotations": st.one_of(st.lists(st.one_of(BOX, VALUES), max_size=3), VALUES)})
VALID_ANNOTATION = {"file": "a.jpg", "image_size": [{"width": 64, "height": 48, "depth": 3}],
                    "annotations": [{"class_id": 1, "left": 5, "top": 6, "width": 20,
                                     "height": 10}],
                    "categories": [{"class_id": 1, "name": "cat"}]}
ANNOTATION_FILE = one_leaf_replaced(VALID_ANNOTATION) | st.tuples(
    ANNOTATION_OBJECT,
    st.one_of(st.just("a.jpg"), HOSTILE_TEXT, st.sampled_from(["/etc/passwd", "../a.jpg",
                                                                "x" * 5000 + ".jpg"])),
    st.one_of(st.none(), VALUES,
              st.lists(st.fixed_dictionaries({"class_id": BOX_NUMBER, "name": SCALARS}),
                       max_size=2)),
).map(lambda parts: {**parts[0], "file": parts[1], "categories": parts[2]})


# --- the property ---------------------------------------------------------------------------
def assert_reported(error: ClientError, culprits: list[str], output_dir: Path) -> None:
    """The message names one of `culprits`; the job's error path gives exit 1 and a failure
    file that is a readable sentence."""
    message = str(error)
    assert message and any(culprit in message for culprit in culprits), message
    assert report_job_error(error, output_dir) == 1
    failure = (output_dir / "failure").read_text(encoding="utf-8")
    assert failure.startswith("ClientError: ") and len(failure) > len("ClientError: \n")
    assert "Traceback" not in failure


def _outcome(read: Callable[[], Any], what: str = "") -> ClientError | None:
    """Run a reader: only a ClientError may escape it (anything else fails the test). The
    outcome is counted (`--hypothesis-show-statistics`)."""
    try:
        read()
    except ClientError as error:
        event(f"{what}ClientError")
        return error
    event(f"{what}accepted")
    return None


def _with_config(file: Callable[[Paths], Path], data: bytes,
                 read: Callable[[Paths], Any]) -> None:
    with tempfile.TemporaryDirectory() as base:
        paths = Paths(Path(base))
        path = file(paths)
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        error = _outcome(lambda: read(paths))
        if error is not None:
            assert_reported(error, [str(path)], paths.output_dir)


def _problem_names(message: str) -> list[str]:
    """The name each problem line of a hyperparameter ClientError starts with (past 20
    problems, the last line counts the rest: "... and 5 more problems")."""
    lines = message.splitlines()[1:]
    if re.fullmatch(r"\.\.\. and [\d,]+ more problems", lines[-1] if lines else ""):
        lines = lines[:-1]
    return [line.split(": ", 1)[0] for line in lines]


def assert_names_keys(error: ClientError, raw: dict[str, Any]) -> list[str]:
    """Every problem line starts with a documented name or a given key (quoted when it is not
    a plain name); returns the names."""
    names = _problem_names(str(error))
    known = {spec.name for spec in SPECS} | set(raw)
    assert names and all(name in known or name[:1] in "'\"" for name in names), names
    return names


# --- config files ---------------------------------------------------------------------------
@FUZZ
@given(documents(HYPERPARAMETERS))
def test_hyperparameters_file(data: bytes) -> None:
    """The file's faults name the file; each invalid value names its key."""
    with tempfile.TemporaryDirectory() as base:
        paths = Paths(Path(base))
        paths.config_dir.mkdir(parents=True)
        paths.hyperparameters_file.write_bytes(data)
        error = _outcome(lambda: read_hyperparameters(paths), "file: ")
        if error is not None:
            assert_reported(error, [str(paths.hyperparameters_file)], paths.output_dir)
            return
        raw = read_hyperparameters(paths)
        error = _outcome(lambda: parse_hyperparameters(raw), "values: ")
        if error is not None:
            assert_reported(error, assert_names_keys(error, raw), paths.output_dir)


@FUZZ
@given(HYPERPARAMETERS)
def test_hyperparameter_mappings(raw: dict[str, Any]) -> None:
    """`parse_hyperparameters` on mappings no JSON file can hold (5,000-digit ints, surrogates,
    NaN) still answers with a ClientError naming keys, or a typed object."""
    error = _outcome(lambda: parse_hyperparameters(raw))
    if error is not None:
        with tempfile.TemporaryDirectory() as output:
            assert_reported(error, assert_names_keys(error, raw), Path(output))


@FUZZ
@given(documents(CHANNELS))
def test_input_data_config_file(data: bytes) -> None:
    _with_config(lambda paths: paths.input_data_config_file, data, read_channels)


@FUZZ
@given(documents(RESOURCES))
def test_resource_config_file(data: bytes) -> None:
    _with_config(lambda paths: paths.resource_config_file, data, read_resource_config)


# --- freeze_layer_pattern -------------------------------------------------------------------
LAYER_NAMES = list(VGG16_CONVS) + ["fc6", "fc7", "vggatrousextractor0_dilated_conv0",
                                   "resnetv10_stage3_batchnorm17", "stage4_unit3_bn3"]
REGEX_TEXT = st.text(st.sampled_from(list("()[]{}*+?|^$.\\wdWs!_,0123456789conv-")),
                     max_size=24)


@FUZZ
@given(st.one_of(REGEX_TEXT, st.sampled_from([r"(\w+)+!", r"(a|a)*$", r"(.*){1,1000}x",
                                              r"((\w)*)*\d!", "(?=x)", r"(\w)\1", "\udead"])))
def test_freeze_layer_pattern_is_refused_or_matched_in_bounded_time(pattern: str) -> None:
    """Any pattern is a ClientError naming the key, or matches every layer name quickly
    (RE2: no backtracking). `(\\w+)+!` alone takes Python's `re` hours on these names."""
    error = _outcome(lambda: parse_hyperparameters(
        {"num_classes": 1, "num_training_samples": 1, "freeze_layer_pattern": pattern}))
    if error is not None:
        assert _problem_names(str(error)) == ["freeze_layer_pattern"]
        return
    regex = compile_regex(pattern)
    start = time.perf_counter()
    for name in LAYER_NAMES:
        regex.search(name * 20)  # 700 characters: exponential backtracking would never end
    assert time.perf_counter() - start < 1.0


# --- annotations ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A channel holding one 64x48 JPEG, a.jpg."""
    image_dir = tmp_path_factory.mktemp("fuzz") / "train"
    image_dir.mkdir()
    cv2.imwrite(str(image_dir / "a.jpg"), np.full((48, 64, 3), 127, dtype=np.uint8))
    return image_dir


@FUZZ
@given(documents(ANNOTATION_FILE))
def test_annotation_file(image_channel: Path, data: bytes) -> None:
    """One annotation file (so one bad file is over the 1 % rule): a sample, or a ClientError
    naming the annotation file."""
    with tempfile.TemporaryDirectory() as base:
        annotation_dir = Path(base) / "train_annotation"
        annotation_dir.mkdir()
        (annotation_dir / "a.json").write_bytes(data)
        channel = read_images(image_channel, annotation_dir, num_classes=3)
        error = _outcome(channel.report.check)
        if error is None:
            assert len(channel.samples) == 1
            boxes = channel.samples[0].boxes
            assert np.isfinite(boxes).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        else:
            assert list(channel.report.errors) == ["train_annotation/a.json"]
            assert_reported(error, ["train_annotation/a.json"], Path(base) / "output")


@FUZZ
@given(st.one_of(one_leaf_replaced(VALID_ANNOTATION), ANNOTATION_OBJECT, VALUES),
       st.integers(1, 4))
def test_annotation_object(document: Any, num_classes: int) -> None:
    """`parse_annotation` (JSON files and manifest bounding-box attributes) reports problems as
    sentences and never raises; the boxes it accepts are finite and non-empty."""
    parsed = parse_annotation(document, num_classes)
    assert all(isinstance(line, str) and line for line in parsed.problems + parsed.warnings)
    if not parsed.problems:
        assert np.isfinite(parsed.boxes).all()
        assert (parsed.boxes[:, 2:] > parsed.boxes[:, :2]).all()
        assert ((parsed.class_ids >= 0) & (parsed.class_ids < num_classes)).all()


JPEG = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()
MANIFEST = Attributes.from_names("train", ["source-ref", "bounding-box", "bounding-box-metadata"])
CLASS_MAPS = st.fixed_dictionaries({"class-map": st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(["0", "1", "²", "-1", "9" * 5000]), ANY_TEXT),
                    SCALARS, max_size=3), VALUES)})


@FUZZ
@given(documents(one_leaf_replaced(VALID_ANNOTATION) | ANNOTATION_OBJECT),
       documents(one_leaf_replaced({"class-map": {"0": "a", "1": "b"}}) | CLASS_MAPS))
def test_manifest_line(boxes: bytes, metadata: bytes) -> None:
    """A manifest line whose bounding-box and metadata records are hostile: a sample, or an
    error naming the line; a bad class-map is a warning."""
    report = ChannelReport("train", "augmented manifest")
    names: dict[int, str] = {}
    records = iter(enumerate([JPEG, boxes, metadata]))
    samples = list(parse_entries(records, MANIFEST, "train", ReadContext(report, 3, 350), names))
    assert report.found == 1 and len(samples) + report.error_count == 1
    assert set(report.errors) <= {"train line 0"}
    assert all(isinstance(name, str) for name in names.values())
    assert all(re.match(r"train line 0: ", warning) for warning in report.warnings)
    error = _outcome(report.check)
    if error is not None:
        with tempfile.TemporaryDirectory() as output:
            assert_reported(error, ["train line 0"], Path(output))
