"""The hyperparameter contract: defaults, every accepted form, every violation named at once."""

from __future__ import annotations

import dataclasses
import json
import time
import typing
from pathlib import Path

import pytest

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.hyperparameters import (
    SPECS,
    Hyperparameters,
    default_values,
    markdown_table,
    parse_hyperparameters,
)
from ssd_sagemaker.safe_regex import compile_regex

REQUIRED = {"num_classes": "3", "num_training_samples": "100"}

# Restated from the published reference (with the two commented range deviations), so the
# table in the module is checked against the documentation rather than against itself.
DOCUMENTED_DEFAULTS = {
    "base_network": "vgg-16", "early_stopping": False, "early_stopping_min_epochs": 10,
    "early_stopping_patience": 5, "early_stopping_tolerance": 0.0, "image_shape": 300,
    "epochs": 30, "freeze_layer_pattern": None, "kv_store": None, "label_width": 350,
    "learning_rate": 0.001, "lr_scheduler_factor": 0.1, "lr_scheduler_step": (),
    "mini_batch_size": 32, "momentum": 0.9, "nms_threshold": 0.45, "optimizer": "sgd",
    "overlap_threshold": 0.5, "use_pretrained_model": True, "weight_decay": 0.0005,
}
UNDOCUMENTED_DEFAULTS = {"nms_topk": 400, "quantize": "none", "precision": "auto",
                        "augmentation": "ssd"}


def parse(**given: object) -> Hyperparameters:
    return parse_hyperparameters({**REQUIRED, **given})


def violation(**given: object) -> str:
    with pytest.raises(ClientError) as caught:
        parse_hyperparameters({**REQUIRED, **given})
    return str(caught.value)


def test_table_holds_exactly_the_documented_names_plus_four_extensions() -> None:
    names = [spec.name for spec in SPECS]
    assert len(names) == len(set(names)) == 26
    assert set(names) == {"num_classes", "num_training_samples"} | set(DOCUMENTED_DEFAULTS) | {
        "nms_topk", "quantize", "precision", "augmentation"}
    assert [spec.name for spec in SPECS if not spec.documented] == [
        "nms_topk", "quantize", "precision", "augmentation"]
    assert [f.name for f in dataclasses.fields(Hyperparameters)] == names


def test_each_field_is_annotated_with_the_type_its_row_parses_to() -> None:
    hints = typing.get_type_hints(Hyperparameters)
    assert {spec.name: hints[spec.name] for spec in SPECS} == {
        spec.name: spec.python_type for spec in SPECS}
    assert hints["kv_store"] == str | None
    assert hints["lr_scheduler_step"] == tuple[int, ...]


def test_the_rows_are_the_fields_metadata_and_defaults() -> None:
    rows = {spec.name: spec for spec in SPECS}
    for field in dataclasses.fields(Hyperparameters):
        spec = rows[field.name]
        assert spec.required is (field.default is dataclasses.MISSING)
        assert spec.required or spec.default == field.default
        assert spec.meaning == field.metadata["hyperparameter"]["meaning"]
    assert [s.name for s in SPECS if s.required] == ["num_classes", "num_training_samples"]
    assert rows["base_network"].choices == ("vgg-16", "resnet-50")


def test_fields_are_built_by_name_only_and_frozen() -> None:
    hp = Hyperparameters(num_classes=3, num_training_samples=100)
    assert hp == parse()
    with pytest.raises(TypeError):
        Hyperparameters(3, 100)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        hp.epochs = 3  # type: ignore[misc]


TYPED_USE = """
from ssd_sagemaker.hyperparameters import Hyperparameters, parse_hyperparameters

def plan(hp: Hyperparameters) -> tuple[int, float, tuple[int, ...], str | None]:
    return hp.epochs, hp.learning_rate, hp.lr_scheduler_step, hp.kv_store

hp = parse_hyperparameters({})
plan(hp)
hp.num_clases
side: str = hp.image_shape
hp.epochs = 3
"""


def test_a_type_checker_sees_every_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reason the class is written out: mypy checks every `hp.` use (when make_dataclass
    built the class at run time, mypy knew no field and reported every use)."""
    api = pytest.importorskip("mypy.api")
    import ssd_sagemaker
    monkeypatch.setenv("MYPYPATH", str(Path(ssd_sagemaker.__file__).parents[1]))
    (tmp_path / "use.py").write_text(TYPED_USE)
    stdout, stderr, _ = api.run([
        str(tmp_path / "use.py"), "--ignore-missing-imports", "--follow-imports", "silent",
        "--no-error-summary", "--cache-dir", str(tmp_path / "cache"), "--config-file", ""])
    findings = [line.split(": error: ")[1] for line in stdout.splitlines() if ": error: " in line]
    assert findings == [
        '"Hyperparameters" has no attribute "num_clases"; maybe "num_classes"?  [attr-defined]',
        'Incompatible types in assignment (expression has type "int", variable has type "str")'
        '  [assignment]',
        'Property "epochs" defined in "Hyperparameters" is read-only  [misc]'], stdout + stderr


@pytest.mark.parametrize("name, expected", sorted({**DOCUMENTED_DEFAULTS,
                                                   **UNDOCUMENTED_DEFAULTS}.items()))
def test_default_applied_when_absent(name: str, expected: object) -> None:
    value = getattr(parse(), name)
    assert value == expected and type(value) is type(expected)
    assert default_values()[name] == expected


@pytest.mark.parametrize("name, given, expected", [
    ("num_classes", "20", 20), ("num_classes", 20, 20), ("num_classes", "20.0", 20),
    ("num_classes", 20.0, 20), ("num_classes", "1000", 1000), ("image_shape", 1024, 1024),
    ("num_training_samples", "16551", 16551), ("num_training_samples", 16551, 16551),
    ("base_network", "resnet-50", "resnet-50"), ("base_network", "vgg-16", "vgg-16"),
    ("base_network", "ResNet-50", "resnet-50"),
    ("early_stopping", "True", True), ("early_stopping", True, True),
    ("early_stopping", "false", False), ("early_stopping", "1", True), ("early_stopping", 0, False),
    ("early_stopping_min_epochs", "3", 3), ("early_stopping_min_epochs", 3, 3),
    ("early_stopping_patience", "2", 2), ("early_stopping_patience", 2, 2),
    ("early_stopping_tolerance", "0.05", 0.05), ("early_stopping_tolerance", 1, 1.0),
    ("early_stopping_tolerance", "0", 0.0),
    ("image_shape", "512", 512), ("image_shape", 300, 300),
    ("epochs", "5", 5), ("epochs", 5, 5),
    ("freeze_layer_pattern", "^(conv1_|conv2_).*", "^(conv1_|conv2_).*"),
    ("freeze_layer_pattern", r"^stage1_unit\d", r"^stage1_unit\d"),
    ("freeze_layer_pattern", "[1]", "[1]"), ("freeze_layer_pattern", "", None),
    ("kv_store", "dist_sync", "dist_sync"), ("kv_store", "dist_async", "dist_async"),
    ("kv_store", "", None),
    ("label_width", "60", 60), ("label_width", 60, 60),
    ("learning_rate", "0.01", 0.01), ("learning_rate", "1e-3", 0.001),
    ("learning_rate", 1, 1.0), ("learning_rate", 0.5, 0.5),
    ("lr_scheduler_factor", "0.5", 0.5), ("lr_scheduler_factor", 0.2, 0.2),
    ("lr_scheduler_step", "10, 20", (10, 20)), ("lr_scheduler_step", [10, 20], (10, 20)),
    ("mini_batch_size", "64", 64), ("mini_batch_size", 64, 64),
    ("momentum", "0.95", 0.95), ("momentum", 0, 0.0), ("momentum", "1", 1.0),
    ("nms_threshold", "0.5", 0.5), ("nms_threshold", 1, 1.0),
    ("optimizer", "adam", "adam"), ("optimizer", "rmsprop", "rmsprop"),
    ("optimizer", "adadelta", "adadelta"), ("optimizer", "SGD", "sgd"),
    ("overlap_threshold", "0.7", 0.7), ("overlap_threshold", 0.3, 0.3),
    ("use_pretrained_model", "0", False), ("use_pretrained_model", 1, True),
    ("use_pretrained_model", "False", False), ("use_pretrained_model", True, True),
    ("weight_decay", "0.0001", 0.0001), ("weight_decay", 0, 0.0),
    ("nms_topk", "200", 200), ("nms_topk", 200, 200),
])
def test_valid_value_string_and_native(name: str, given: object, expected: object) -> None:
    value = getattr(parse(**{name: given}), name)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("name, given, expected", [
    ("base_network", '"resnet-50"', "resnet-50"), ("optimizer", '"adam"', "adam"),
    ("kv_store", '"dist_async"', "dist_async"), ("early_stopping", "true", True),
    ("early_stopping", '"True"', True), ("use_pretrained_model", "false", False),
    ("epochs", '"12"', 12), ("learning_rate", '"0.002"', 0.002),
    ("lr_scheduler_step", "[10, 20]", (10, 20)), ("lr_scheduler_step", '"10, 20"', (10, 20)),
    ("freeze_layer_pattern", json.dumps(r"^conv\d_"), r"^conv\d_"),
    ("kv_store", "null", None), ("freeze_layer_pattern", '""', None),
    ("freeze_layer_pattern", "null", None),
])
def test_json_encoded_strings_are_unwrapped(name: str, given: str, expected: object) -> None:
    assert getattr(parse(**{name: given}), name) == expected


@pytest.mark.parametrize("name, given, expected", [
    ("epochs", " 7 ", 7), ("base_network", " resnet-50\n", "resnet-50"),
    ("early_stopping", " True ", True), ("learning_rate", "\t0.1 ", 0.1),
    ("lr_scheduler_step", " 10 , 20 ", (10, 20)),
])
def test_whitespace_around_values_is_stripped(name: str, given: str, expected: object) -> None:
    assert getattr(parse(**{name: given}), name) == expected


@pytest.mark.parametrize("name, given", [
    ("num_classes", "0"), ("num_classes", "3.5"), ("num_classes", True), ("num_classes", "three"),
    ("num_classes", "1001"), ("num_classes", 100000), ("image_shape", "1025"),
    ("image_shape", 100000),
    ("num_training_samples", -1), ("num_training_samples", "1e400"),
    ("base_network", "resnet-101"), ("base_network", 16),
    ("early_stopping", "yes"), ("early_stopping", 2),
    ("early_stopping_min_epochs", "0"), ("early_stopping_min_epochs", "ten"),
    ("early_stopping_patience", -5), ("early_stopping_patience", "true"),
    ("early_stopping_tolerance", "1.5"), ("early_stopping_tolerance", "-0.1"),
    ("early_stopping_tolerance", "high"),
    ("image_shape", "299"), ("image_shape", "512px"),
    ("epochs", "0"), ("epochs", True), ("epochs", "2.5"), ("epochs", ""),
    ("freeze_layer_pattern", 5),
    ("kv_store", "local"), ("kv_store", "device"),
    ("label_width", 0), ("label_width", [60]),
    ("learning_rate", "2"), ("learning_rate", "0"), ("learning_rate", "fast"),
    ("learning_rate", "nan"), ("learning_rate", False),
    ("lr_scheduler_factor", "1"), ("lr_scheduler_factor", 0), ("lr_scheduler_factor", "half"),
    ("lr_scheduler_step", "20, 10"), ("lr_scheduler_step", "a, b"),
    ("mini_batch_size", "-32"), ("mini_batch_size", "32.5"),
    ("momentum", "1.1"), ("momentum", "-0.1"), ("momentum", None),
    ("nms_threshold", "0"), ("nms_threshold", "1.01"), ("nms_threshold", [0.5]),
    ("optimizer", "nag"), ("optimizer", ["sgd"]),
    ("overlap_threshold", "0"), ("overlap_threshold", "x"),
    ("use_pretrained_model", "2"), ("use_pretrained_model", "maybe"),
    ("weight_decay", "1"), ("weight_decay", "-0.0005"), ("weight_decay", "small"),
    ("nms_topk", "0"), ("nms_topk", "all"),
])
def test_invalid_value_names_parameter_value_and_what_is_valid(name: str, given: object) -> None:
    message = violation(**{name: given})
    spec = next(spec for spec in SPECS if spec.name == name)
    assert message.startswith("Invalid hyperparameters (1 problem):\n")
    assert f"{name}: {given!r} is invalid: must be {spec.valid}" in message


def test_message_example_and_choice_lists() -> None:
    assert "learning_rate: '2' is invalid: must be a float in (0, 1]" in violation(
        learning_rate="2")
    assert "one of 'vgg-16', 'resnet-50'" in violation(base_network="vgg-19")
    assert "one of 'sgd', 'adam', 'rmsprop', 'adadelta'" in violation(optimizer="nag")
    assert "one of 'dist_sync', 'dist_async'" in violation(kv_store="local")
    assert "augmentation: 'crop' is invalid: must be one of 'ssd', 'flip', 'none'" in violation(
        augmentation="crop")


@pytest.mark.parametrize("given, value", [("none", "none"), ('"flip"', "flip"), ("SSD", "ssd")])
def test_augmentation_choices_and_default(given: str, value: str) -> None:
    assert parse(augmentation=given).augmentation == value
    assert parse().augmentation == "ssd"


@pytest.mark.parametrize("key", ["sagemaker_program", "sagemaker_submit_directory",
                                 "_tuning_objective_metric", "_kvstore", "_num_kv_servers"])
def test_reserved_keys_are_ignored(key: str) -> None:
    assert parse(**{key: '"anything"'}) == parse()


def test_every_violation_is_reported_at_once() -> None:
    message = violation(epochs="0", learning_rate="2", optimizer="nag")
    assert message.startswith("Invalid hyperparameters (3 problems):\n")
    lines = message.splitlines()[1:]
    assert len(lines) == 3
    assert {line.split(":")[0] for line in lines} == {"epochs", "learning_rate", "optimizer"}
    assert "'0'" in message and "'2'" in message and "'nag'" in message


def test_thousands_of_problems_list_twenty_and_count_the_rest() -> None:
    """1 million unknown keys used to make a 91 MB failure file and log (FailureReason shows
    1024 characters); the known parameters' problems come first."""
    unknown = {f"key_{index}": "1" for index in range(1000)}
    message = violation(epochs="0", **unknown)
    first, *lines = message.splitlines()
    assert first == "Invalid hyperparameters (1,001 problems):"
    assert len(lines) == 21 and lines[0].startswith("epochs: '0' is invalid")
    assert lines[1:20] == [f"key_{index}: unknown hyperparameter (given '1'); see the "
                           f"hyperparameter table in the README" for index in range(19)]
    assert lines[20] == "... and 981 more problems"


def test_twenty_problems_are_listed_without_a_remainder_line() -> None:
    message = violation(**{f"key_{index}": "1" for index in range(20)})
    assert message.splitlines()[0] == "Invalid hyperparameters (20 problems):"
    assert len(message.splitlines()) == 21 and "more problems" not in message


def test_unknown_key_suggests_the_closest_name() -> None:
    message = violation(learning_rte="0.1")
    assert "learning_rte: unknown hyperparameter (given '0.1'); did you mean 'learning_rate'?" \
        in message
    assert "did you mean" not in violation(zzzz="1")
    assert "zzzz: unknown hyperparameter" in violation(zzzz="1")


def test_missing_required_parameters_are_violations() -> None:
    with pytest.raises(ClientError) as caught:
        parse_hyperparameters({"epochs": "0"})
    message = str(caught.value)
    assert message.startswith("Invalid hyperparameters (3 problems):")
    assert "num_classes: required, but not given; must be an int in (0, 1000]" in message
    assert "num_training_samples: required, but not given" in message
    assert "epochs: '0' is invalid" in message
    with pytest.raises(ClientError, match=r"num_training_samples: required, but not given"):
        parse_hyperparameters({"num_classes": 3})


@pytest.mark.parametrize("name", ["num_classes", "num_training_samples"])
@pytest.mark.parametrize("given", ["", None, "  ", "null", '""', " null "])
def test_empty_required_value_is_required_but_not_given(name: str, given: object) -> None:
    """An empty value of a required parameter is a missing value, not its default (None)."""
    message = violation(**{name: given})
    assert message.startswith("Invalid hyperparameters (1 problem):\n")
    assert f"{name}: required, but not given (given {given!r}); must be an int" in message


@pytest.mark.parametrize("name, given, bound", [
    ("num_classes", 100_000, "(0, 1000]"), ("image_shape", 100_000, "[300, 1024]")])
def test_sizes_beyond_what_memory_allows_are_refused_up_front(name: str, given: int,
                                                              bound: str) -> None:
    assert f"{name}: {given!r} is invalid: must be an int in {bound}" in violation(
        **{name: given})


@pytest.mark.parametrize("pattern", [r"(\w+)+!", r"^(a|a)*$", r"((\w)*)*\d!"])
def test_backtracking_patterns_are_accepted_and_match_in_linear_time(pattern: str) -> None:
    """RE2 has no backtracking; Python's re needs about an hour for `(\\w+)+!` on a
    33-character layer name (measured: 1.9 s at 22 characters, doubling with each one)."""
    assert parse(freeze_layer_pattern=pattern).freeze_layer_pattern == pattern
    regex = compile_regex(pattern)
    start = time.perf_counter()
    assert regex.search("vggatrousextractor0_dilated_conv0" * 100) is None
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("pattern, reason", [
    ("^(?!conv5).*", "invalid perl operator: (?!"), (r"(conv)\1", "invalid escape sequence"),
    ("(?<=x)y", "invalid perl operator: (?<")])
def test_patterns_re2_cannot_match_are_refused_with_the_key(pattern: str, reason: str) -> None:
    message = violation(freeze_layer_pattern=pattern)
    assert f"freeze_layer_pattern: {pattern!r} is invalid: must be a regular expression in RE2 " \
           f"syntax" in message
    assert f"regex error: {reason}" in message


@pytest.mark.parametrize("given", ["1" * 5000, 10**400, 10**5000, "[" * 100_000],
                         ids=["5000-digit-text", "400-digit-int", "5000-digit-int", "deep-text"])
def test_huge_values_are_invalid_and_shortened(given: object) -> None:
    message = violation(num_classes=given)
    assert message.startswith("Invalid hyperparameters (1 problem):\nnum_classes: ")
    assert "is invalid: must be an int in (0, 1000]" in message and len(message) < 200


def test_unprintable_or_long_unknown_keys_are_quoted_and_shortened() -> None:
    message = violation(**{"\udead": "1", "k" * 5000: "2", " : ": None})
    assert "'\\udead': unknown hyperparameter (given '1')" in message
    assert "' : ': unknown hyperparameter (given None)" in message
    assert max(len(line) for line in message.splitlines()) < 200


@pytest.mark.parametrize("given, expected", [
    ("10, 20", (10, 20)), ("10,20", (10, 20)), ('"10, 20"', (10, 20)), ([10, 20], (10, 20)),
    ("[10, 20]", (10, 20)), ('"[10, 20]"', (10, 20)), (["10", "20"], (10, 20)), ("15", (15,)),
    (15, (15,)), ("", ()), ('""', ()), ([], ()), ("[]", ()), (None, ()),
    ("5, 10.0, 40", (5, 10, 40)),
])
def test_lr_scheduler_step_forms(given: object, expected: tuple[int, ...]) -> None:
    assert parse(lr_scheduler_step=given).lr_scheduler_step == expected


@pytest.mark.parametrize("given", ["20, 10", "10, 10", "0, 10", "-5", "10,,20", "10, 20,",
                                   "10; 20", "3.5", [True], [10, "x"], {"a": 1}])
def test_lr_scheduler_step_violations(given: object) -> None:
    assert f"lr_scheduler_step: {given!r} is invalid" in violation(lr_scheduler_step=given)


@pytest.mark.parametrize("pattern", ["(", "conv[1", "*conv"])
def test_invalid_regex_names_the_regex_error(pattern: str) -> None:
    message = violation(freeze_layer_pattern=pattern)
    assert f"freeze_layer_pattern: {pattern!r} is invalid" in message
    assert "regex error:" in message


def test_long_values_are_shortened_in_messages() -> None:
    message = violation(optimizer="x" * 500)
    assert len(message) < 300 and "..." in message


def test_result_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        parse().epochs = 3  # type: ignore[misc]


NON_DEFAULT = {"num_classes": 7, "num_training_samples": 1234, "base_network": "resnet-50",
               "early_stopping": True, "early_stopping_min_epochs": 4,
               "early_stopping_patience": 3, "early_stopping_tolerance": 0.01,
               "image_shape": 512, "epochs": 12, "freeze_layer_pattern": "^(conv1_|conv2_).*",
               "kv_store": "dist_sync", "label_width": 60, "learning_rate": 0.004,
               "lr_scheduler_factor": 0.5, "lr_scheduler_step": "4, 8", "mini_batch_size": 16,
               "momentum": 0.8, "nms_threshold": 0.4, "optimizer": "adam",
               "overlap_threshold": 0.6, "use_pretrained_model": 0, "weight_decay": 0.0001,
               "nms_topk": 100, "quantize": "int8", "precision": "float32",
               "augmentation": "none"}


@pytest.mark.parametrize("raw", [REQUIRED, NON_DEFAULT], ids=["defaults", "non-defaults"])
def test_to_json_dict_round_trips(raw: dict[str, object]) -> None:
    hp = parse_hyperparameters(raw)
    native = json.loads(json.dumps(hp.to_json_dict()))
    assert set(native) == {spec.name for spec in SPECS}
    assert parse_hyperparameters(native) == hp
    # As SageMaker framework estimators write them: every value a JSON-encoded string.
    assert parse_hyperparameters({k: json.dumps(v) for k, v in native.items()}) == hp


def test_non_default_values_all_taken() -> None:
    hp = parse_hyperparameters(NON_DEFAULT)
    assert hp.to_json_dict()["lr_scheduler_step"] == [4, 8]
    assert hp.use_pretrained_model is False and hp.kv_store == "dist_sync"
    assert all(getattr(hp, name) != default for name, default in default_values().items())


def test_markdown_table_has_a_row_for_every_documented_name() -> None:
    table = markdown_table()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [s.name for s in SPECS if s.documented]
    assert len(rows) == 22
    assert "| `learning_rate` | no | a float in (0, 1] | `0.001` | initial learning rate |" in rows
    assert rows[0].startswith("| `num_classes` | yes | an int in (0, 1000] | – |")
    assert r"`^(conv1_\|conv2_).*`" in table  # pipes inside cells are escaped
    assert "- `nms_topk` (an int > 0, default `400`)" in table
    assert "- `precision` (one of 'auto', 'float32', 'bfloat16', 'float16', default `auto`)" \
        in table
    assert "- `quantize` (one of 'none', 'int8', default `none`): `int8`: after export" in table


def test_quantize_takes_none_or_int8() -> None:
    assert parse_hyperparameters({**REQUIRED, "quantize": "INT8"}).quantize == "int8"
    assert parse_hyperparameters(REQUIRED).quantize == "none"
    assert "quantize: 'fp8' is invalid: must be one of 'none', 'int8'" in violation(
        quantize="fp8")
