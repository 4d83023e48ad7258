"""The hyperparameter contract: ONE table of every hyperparameter this algorithm honours — the
fields of the typed immutable `Hyperparameters`, each carrying its row in `metadata` — and
everything derived from it: the rows (`SPECS`), parsing of the values SageMaker writes,
validation with every violation reported at once, defaults and the README table
(`markdown_table`).

SageMaker writes every value as a string, raw (`"32"`, `"True"`, `"10, 20"`) or JSON-encoded
(`"\\"vgg-16\\""`, `"true"`, `"[10, 20]"`); people write native JSON by hand. All are accepted:
liberal in form, strict in meaning (a bool is never an int, `"3.5"` is not an int).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping
from typing import Any

from ssd_sagemaker.augmentation_names import AUGMENTATION_NAMES
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.backbones import BACKBONES
from ssd_sagemaker.safe_regex import RegexError, compile_regex
from ssd_sagemaker.user_json import BadJSON, parse_json

# Keys SageMaker (or the built-in algorithm's tooling) adds; accepted and ignored.
IGNORED_PREFIX = "sagemaker_"
IGNORED_KEYS = frozenset({"_tuning_objective_metric", "_kvstore", "_num_kv_servers"})


@dataclasses.dataclass(frozen=True)
class HyperparameterSpec:
    """One row of the contract. `bounds` is interval notation ("(0, 1]", "[300, inf)") for
    ints and floats; `valid` (the human description) is derived so it cannot drift from it."""

    name: str
    kind: str  # int | float | bool (shown True/False) | flag (shown 0/1) | choice | regex | epochs
    default: Any
    meaning: str
    required: bool = False
    bounds: str = ""
    choices: tuple[str, ...] = ()
    documented: bool = True  # False: honoured but absent from the published reference

    @property
    def optional(self) -> bool:
        """An empty value ("" or null) means "not given" for parameters defaulting to nothing
        (for a required one it is a missing value, not a default)."""
        return not self.required and (self.default is None or self.default == ())

    @property
    def valid(self) -> str:
        if self.kind in ("int", "float"):
            low, high = (part.strip() for part in self.bounds[1:-1].split(","))
            article = "an int" if self.kind == "int" else "a float"
            if high == "inf":
                return f"{article} {'>' if self.bounds[0] == '(' else '>='} {low}"
            return f"{article} in {self.bounds}"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(choice) for choice in self.choices)
        return {"bool": "True or False (also true/false, 1/0)",
                "flag": "0 or 1 (also True/False)",
                "regex": "a regular expression in RE2 syntax (Python's, without look-around "
                         "or backreferences; matched in linear time; empty: none)",
                "epochs": "comma-separated epochs such as '10, 20', each an int > 0, "
                          "strictly increasing (empty: no steps)"}[self.kind]

    @property
    def python_type(self) -> Any:
        """The type the field must be annotated with (a test holds the class to it)."""
        base = {"int": int, "float": float, "bool": bool, "flag": bool, "choice": str,
                "regex": str, "epochs": tuple[int, ...]}[self.kind]
        return base | None if self.default is None and not self.required else base


# The base networks `base_network` accepts (the choices of that field): the registry's names.
BASE_NETWORKS: tuple[str, ...] = tuple(BACKBONES)

_ROW = "hyperparameter"  # the metadata key under which a field carries its row of the table


def _row(kind: str, meaning: str, *, bounds: str = "", choices: tuple[str, ...] = (),
         documented: bool = True) -> dict[str, Any]:
    """A field's metadata: its row of the contract but for name, default and required, which
    the field itself states (so they are written once)."""
    return {_ROW: {"kind": kind, "meaning": meaning, "bounds": bounds, "choices": choices,
                   "documented": documented}}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Hyperparameters:
    """The validated, typed hyperparameters. Written out field by field so type checkers and
    editors know every name and type; each field's `metadata` holds its row of the contract,
    from which `SPECS` is derived: this class is the one table."""

    num_classes: int = dataclasses.field(metadata=_row(
        "int", "number of output classes; the network's output size. At most 1000 because "
        "memory grows with it: each class adds 134k weights to the vgg-16 SSD300 and a score "
        "per anchor (8,732 per image at 300); at 1000 classes the network has 158M weights "
        "and one training image takes 2.2 GB on the CPU (24M and 0.55 GB at 1 class)",
        bounds="(0, 1000]"))
    num_training_samples: int = dataclasses.field(metadata=_row(
        "int", "number of training samples; turns `lr_scheduler_step` epochs into iteration "
        "counts. If it disagrees with the real count, training warns with both numbers",
        bounds="(0, inf)"))
    base_network: str = dataclasses.field(default="vgg-16", metadata=_row(
        "choice", "backbone of the SSD", choices=BASE_NETWORKS))
    early_stopping: bool = dataclasses.field(default=False, metadata=_row(
        "bool", "enable early stopping on `validation:mAP`"))
    early_stopping_min_epochs: int = dataclasses.field(default=10, metadata=_row(
        "int", "epochs that must run before early stopping may trigger", bounds="(0, inf)"))
    early_stopping_patience: int = dataclasses.field(default=5, metadata=_row(
        "int", "epochs without improvement (as defined by the tolerance) before stopping",
        bounds="(0, inf)"))
    early_stopping_tolerance: float = dataclasses.field(default=0.0, metadata=_row(
        "float", "relative improvement needed: if (mAP - best mAP) / best mAP < tolerance, it "
        "is not an improvement", bounds="[0, 1]"))
    image_shape: int = dataclasses.field(default=300, metadata=_row(
        "int", "input images are resized to a square of this side; 300 and 512 recommended. "
        "At most 1024 because memory grows with the square of the side: one vgg-16 training "
        "image takes 0.55 GB at 300, 1.3 GB at 512 and 3.5 GB at 1024 on the CPU (98,276 "
        "anchors)", bounds="[300, 1024]"))
    epochs: int = dataclasses.field(default=30, metadata=_row(
        "int", "training epochs", bounds="(0, inf)"))
    freeze_layer_pattern: str | None = dataclasses.field(default=None, metadata=_row(
        "regex", "base-network layers whose names match are frozen (weights not updated), "
        "e.g. `^(conv1_|conv2_).*`; names as in the published vgg16/resnet-50 symbol files"))
    kv_store: str | None = dataclasses.field(default=None, metadata=_row(
        "choice", "weight-update synchronisation across machines, ignored on one machine. "
        "`dist_sync`: gradients synchronised after every batch (n machines x batch b behave "
        "like batch n*b); `dist_async`: asynchronous updates",
        choices=("dist_sync", "dist_async")))
    label_width: int = dataclasses.field(default=350, metadata=_row(
        "int", "padded label width keeping training and validation data in step (RecordIO); "
        "e.g. 10 objects x 5 numbers + header of 2 needs at least 52", bounds="(0, inf)"))
    learning_rate: float = dataclasses.field(default=0.001, metadata=_row(
        "float", "initial learning rate", bounds="(0, 1]"))
    lr_scheduler_factor: float = dataclasses.field(default=0.1, metadata=_row(
        "float", "lr_new = lr_old x factor at each step", bounds="(0, 1)"))
    lr_scheduler_step: tuple[int, ...] = dataclasses.field(default=(), metadata=_row(
        "epochs", "epochs after which the learning rate is multiplied by the factor"))
    mini_batch_size: int = dataclasses.field(default=32, metadata=_row(
        "int", "batch size, split across the GPUs of a machine; with `dist_sync` the "
        "effective batch is mini_batch_size x machines. Memory grows with it, image_shape and "
        "base_network", bounds="(0, inf)"))
    # Deviation: documented as (0, 1], but SageMaker's documented tuning range starts at 0.
    momentum: float = dataclasses.field(default=0.9, metadata=_row(
        "float", "momentum for `sgd`; ignored by other optimizers", bounds="[0, 1]"))
    nms_threshold: float = dataclasses.field(default=0.45, metadata=_row(
        "float", "non-maximum suppression threshold", bounds="(0, 1]"))
    optimizer: str = dataclasses.field(default="sgd", metadata=_row(
        "choice", "optimizer type (MXNet optimizers)",
        choices=("sgd", "adam", "rmsprop", "adadelta")))
    overlap_threshold: float = dataclasses.field(default=0.5, metadata=_row(
        "float", "IoU overlap threshold used in evaluation", bounds="(0, 1]"))
    use_pretrained_model: bool = dataclasses.field(default=True, metadata=_row(
        "flag", "1: start from a pre-trained model of the chosen architecture; 0: train from "
        "scratch"))
    # Deviation: documented as (0, 1), but SageMaker's documented tuning range starts at 0.
    weight_decay: float = dataclasses.field(default=0.0005, metadata=_row(
        "float", "weight decay for `sgd` and `rmsprop`; ignored by other optimizers",
        bounds="[0, 1)"))
    nms_topk: int = dataclasses.field(default=400, metadata=_row(
        "int", "number of highest-scoring detections kept before non-maximum suppression",
        bounds="(0, inf)", documented=False))
    quantize: str = dataclasses.field(default="none", metadata=_row(
        "choice", "`int8`: after export, also write an INT8 network calibrated on up to 32 "
        "images of the validation channel (the training channel if there is none), for "
        "`SSD_INFERENCE_PRECISION=int8`; convolutions whose INT8 form loses accuracy stay "
        "float32 (measured on those images: agreement with float32 and mAP against their "
        "labels). The float32 model is written as always", choices=("none", "int8"),
        documented=False))
    precision: str = dataclasses.field(default="auto", metadata=_row(
        "choice", "arithmetic of training: `auto` uses bfloat16 convolutions on "
        "one host with avx512_bf16/amx_bf16 CPUs and float16 with loss scaling on GPUs (MXNet "
        "AMP), float32 otherwise; weights, checkpoints and the model artifact are float32 in "
        "every case", choices=("auto", "float32", "bfloat16", "float16"), documented=False))
    augmentation: str = dataclasses.field(default="ssd", metadata=_row(
        "choice", "how training images are augmented: `ssd` is GluonCV's "
        "SSD recipe (photometric distortion, random expand, IoU-constrained random crop, "
        "random interpolation, horizontal flip); `flip` only flips horizontally (p=0.5); "
        "`none` only resizes, as validation and serving do. `flip` and `none` suit images "
        "whose colours, scale or layout carry meaning (text, medical, synthetic) and small "
        "from-scratch jobs, which the full recipe slows down", choices=AUGMENTATION_NAMES,
        documented=False))

    @property
    def smallest_anchor(self) -> float:
        """The side of `base_network`'s smallest anchor at `image_shape`, in network pixels."""
        return BACKBONES[self.base_network].smallest_anchor(self.image_shape)

    def to_json_dict(self) -> dict[str, Any]:
        """Native JSON values (tuples as lists): what an artifact stores and this module reads
        back."""
        values = {spec.name: getattr(self, spec.name) for spec in SPECS}
        return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items()}


def _spec(field: dataclasses.Field[Any]) -> HyperparameterSpec:
    """The row of one field: a field without a default is a required hyperparameter."""
    required = field.default is dataclasses.MISSING
    return HyperparameterSpec(name=field.name, default=None if required else field.default,
                              required=required, **field.metadata[_ROW])


SPECS: tuple[HyperparameterSpec, ...] = tuple(
    _spec(field) for field in dataclasses.fields(Hyperparameters))
_BY_NAME = {spec.name: spec for spec in SPECS}


def default_values() -> dict[str, Any]:
    """The value of every optional hyperparameter when it is not given."""
    return {spec.name: spec.default for spec in SPECS if not spec.required}


def _decode(raw: Any, keep_text: bool) -> Any:
    """Strip a string and unwrap one level of JSON; `keep_text` keeps non-string JSON other
    than null as text (a regex like `[1]` must not become a list)."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    try:
        value = parse_json(text)
    except BadJSON:
        return text
    if isinstance(value, str):
        return value.strip()
    return text if keep_text and value is not None else value


def _to_int(value: Any) -> int:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            value = float(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError


def _to_float(value: Any) -> float:
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return float(value)
    raise ValueError


_BOOLS = {"true": True, "1": True, "false": False, "0": False}


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, str)) and str(value).lower() in _BOOLS:
        return _BOOLS[str(value).lower()]
    raise ValueError


def _to_epochs(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        text = value[1:-1] if value.startswith("[") and value.endswith("]") else value
        items: list[Any] = text.split(",") if text.strip() else []
    else:
        items = value if isinstance(value, list) else [value]
    epochs = tuple(_to_int(item.strip() if isinstance(item, str) else item) for item in items)
    if any(epoch <= 0 for epoch in epochs) or any(a >= b for a, b in zip(epochs, epochs[1:])):
        raise ValueError
    return epochs


def _within(number: float, bounds: str) -> bool:
    low, high = (float(part) for part in bounds[1:-1].split(","))
    above = number > low if bounds[0] == "(" else number >= low
    below = number < high if bounds[-1] == ")" else number <= high
    return above and below  # NaN fails both


class _Detailed(ValueError):
    """An invalid value whose message helps the user (Python's own conversion errors do not)."""


def _convert(spec: HyperparameterSpec, raw: Any) -> Any:
    """The typed value of one parameter; ValueError (`_Detailed`: with a reason) if invalid.

    Choices are matched case-insensitively and normalised to the documented spelling
    (`VGG-16` -> `vgg-16`): no spelling of them is ambiguous, so refusing would only annoy.
    """
    value = _decode(raw, keep_text=spec.kind == "regex")
    if spec.optional and value in (None, ""):
        return spec.default
    if spec.kind in ("int", "float"):
        number = (_to_int if spec.kind == "int" else _to_float)(value)
        if not _within(number, spec.bounds):
            raise ValueError
        return number
    if spec.kind in ("bool", "flag"):
        return _to_bool(value)
    if spec.kind == "epochs":
        return _to_epochs(value)
    if not isinstance(value, str):
        raise ValueError
    if spec.kind == "regex":
        try:
            compile_regex(value)
        except RegexError as error:
            raise _Detailed(str(error)) from None
        return value
    canonical = {choice.lower(): choice for choice in spec.choices}.get(value.lower())
    if canonical is None:
        raise ValueError
    return canonical


def _shown(raw: Any) -> str:
    """The value as the user wrote it (Python repr), shortened; never raises."""
    try:
        text = repr(raw)
    except (ValueError, RecursionError):  # a 5,000-digit int, a 100,000-deep list
        text = f"<a {type(raw).__name__} too large to show>"
    return text if len(text) <= 60 else text[:57] + "..."


def _is_empty(raw: Any) -> bool:
    """"", "  ", null and "null": how a form or a script says "no value"."""
    return raw is None or (isinstance(raw, str) and _decode(raw, keep_text=False) in (None, ""))


# Problems listed in the failure file: FailureReason shows its first 1024 characters, and a
# file of thousands of unknown keys must not become a failure file and log of as many lines.
MAX_LISTED_PROBLEMS = 20


def _unknown(key: str, raw: Any) -> str:
    close = difflib.get_close_matches(key[:100], list(_BY_NAME), n=1)
    hint = f"did you mean {close[0]!r}?" if close else "see the hyperparameter table in the README"
    name = key if re.fullmatch(r"[A-Za-z0-9_.-]{1,60}", key) else _shown(key)  # quoted: " : "
    return f"{name}: unknown hyperparameter (given {_shown(raw)}); {hint}"


def parse_hyperparameters(raw: Mapping[str, object]) -> Hyperparameters:
    """Validate `hyperparameters.json`'s mapping into a `Hyperparameters`; a `ClientError`
    lists every problem at once so a user fixes the job in one round trip, not one per run."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for spec in SPECS:
        if spec.name not in raw or (spec.required and _is_empty(raw[spec.name])):
            if spec.required:
                given = f" (given {_shown(raw[spec.name])})" if spec.name in raw else ""
                problems.append(f"{spec.name}: required, but not given{given}; must be "
                                f"{spec.valid}")
            continue
        try:
            values[spec.name] = _convert(spec, raw[spec.name])
        except (ValueError, TypeError, OverflowError) as error:
            detail = f"; {error}" if isinstance(error, _Detailed) else ""
            problems.append(f"{spec.name}: {_shown(raw[spec.name])} is invalid: "
                            f"must be {spec.valid}{detail}")
    unknown = [key for key in raw if key not in _BY_NAME and key not in IGNORED_KEYS
               and not key.startswith(IGNORED_PREFIX)]
    total = len(problems) + len(unknown)
    if total:
        room = max(0, MAX_LISTED_PROBLEMS - len(problems))
        # a suggestion ("did you mean ...?") costs a fuzzy match: made for listed keys only
        listed = problems[:MAX_LISTED_PROBLEMS] + [_unknown(key, raw[key])
                                                   for key in unknown[:room]]
        if total > len(listed):
            listed.append(f"... and {total - len(listed):,} more problems")
        count = f"{total:,} problem{'s' if total > 1 else ''}"
        raise ClientError(f"Invalid hyperparameters ({count}):\n" + "\n".join(listed))
    return Hyperparameters(**values)


def _shown_default(spec: HyperparameterSpec) -> str:
    if spec.required:
        return "–"
    if spec.default is None:
        return "(none)"
    if spec.kind == "flag":
        return f"`{int(spec.default)}`"
    return '`""` (no steps)' if spec.default == () else f"`{spec.default}`"


def markdown_table() -> str:
    """The README's hyperparameter table, plus a note on the honoured undocumented ones."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| name | required | valid values | default | meaning |", "|---|---|---|---|---|"]
    lines += [f"| `{s.name}` | {'yes' if s.required else 'no'} | {cell(s.valid)} | "
              f"{_shown_default(s)} | {cell(s.meaning)} |" for s in SPECS if s.documented]
    extra = [s for s in SPECS if not s.documented]
    if extra:
        lines += ["", "Also honoured, though absent from the published reference:"]
        lines += [f"- `{s.name}` ({s.valid}, default {_shown_default(s)}): {s.meaning}."
                  for s in extra]
    return "\n".join(lines) + "\n"


__all__ = ["HyperparameterSpec", "Hyperparameters", "SPECS", "IGNORED_KEYS", "IGNORED_PREFIX",
           "default_values", "markdown_table", "parse_hyperparameters"]
