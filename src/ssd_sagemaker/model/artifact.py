"""The model artifact in `/opt/ml/model`: the built-in algorithm's files (exported symbol and
parameters, `hyperparams.json`) plus `model_info.json` with what serving needs; with
`quantize=int8`, also the INT8 network (`model_algo_1-int8-*`) beside the float32 one, listed
in `model_info.json` under `int8`.

`manifest.json` lists every file of the artifact with its size and SHA-256 and is written
last: the files are renamed into place one by one, so a crash in between (over an older
artifact) leaves a mixed set, which the older manifest no longer matches. Loading refuses
files that do not match it (`verify_manifest`); a folder without one (an earlier version's
artifact, or a user's own) is accepted with a warning."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mxnet as mx
from mxnet import gluon

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.storage import differs_from, fingerprint, serialized_files, write_files

LOG = logging.getLogger(__name__)

MODEL_PREFIX = "model_algo_1"
SYMBOL_FILE = f"{MODEL_PREFIX}-symbol.json"
PARAMS_FILE = f"{MODEL_PREFIX}-0000.params"
HYPERPARAMS_FILE = "hyperparams.json"
MODEL_INFO_FILE = "model_info.json"
INT8_PREFIX = f"{MODEL_PREFIX}-int8"
INT8_SYMBOL_FILE = f"{INT8_PREFIX}-symbol.json"
INT8_PARAMS_FILE = f"{INT8_PREFIX}-0000.params"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Int8Network:
    """The INT8 network's entry in `model_info.json`: its files, the layers left in float32, and
    the fidelity measured when it was calibrated on the calibration images: VOC07 mAP of its
    detections against the float32 network's (None when the float32 network detected nothing
    there to compare with), and the mAP of each against those images' labels (None in entries
    written before it was measured)."""

    symbol_file: str
    params_file: str
    float32_layers: tuple[str, ...]
    calibration_images: int
    fidelity_map: float | None
    labels_map: float | None = None
    float32_labels_map: float | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What a predictor needs besides the network: names, input size, provenance."""

    classes: tuple[str, ...]
    image_shape: int
    base_network: str
    nms_threshold: float
    format_version: int = FORMAT_VERSION
    int8: Int8Network | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _exported_files(net: gluon.HybridBlock, image_shape: int, prefix: str) -> dict[str, bytes]:
    """`net` traced in inference mode (NMS included) and exported as `prefix`-symbol.json and
    `prefix`-0000.params, in memory."""
    net.hybridize()  # (re)trace in inference mode for export
    with mx.autograd.predict_mode():
        net(mx.nd.zeros((1, 3, image_shape, image_shape),
                        ctx=next(iter(net.collect_params().values())).list_ctx()[0]))
    return serialized_files(lambda folder: net.export(str(folder / prefix), epoch=0),
                            [f"{prefix}-symbol.json", f"{prefix}-0000.params"])


def _info_file(info: ModelInfo) -> bytes:
    info_dict = asdict(info)
    info_dict["classes"] = list(info.classes)
    if info.int8 is None:
        del info_dict["int8"]  # readers of format 1 before INT8 see the file they know
    return (json.dumps(info_dict, indent=2) + "\n").encode()


def save_artifact(net: gluon.HybridBlock, model_dir: Path, info: ModelInfo,
                  hyperparameters: Mapping[str, Any]) -> list[Path]:
    """Export `net` in inference mode (NMS included) with the side files, all or nothing: a
    full disk leaves no partial artifact and is a ClientError naming the folder and the
    artifact's size."""
    files = _exported_files(net, info.image_shape, MODEL_PREFIX)
    files[HYPERPARAMS_FILE] = (json.dumps(dict(hyperparameters), indent=2) + "\n").encode()
    files[MODEL_INFO_FILE] = _info_file(info)
    written = write_files(model_dir, files, "the model artifact")
    return written + _write_manifest(model_dir, files, {})


def add_int8_network(net: gluon.HybridBlock, model_dir: Path, info: ModelInfo) -> list[Path]:
    """Write the INT8 network beside the float32 one and list it in `model_info.json` (`info`
    with its `int8` entry), all or nothing: on a full disk the artifact stays float32-only."""
    assert info.int8 is not None
    files = _exported_files(net, info.image_shape, INT8_PREFIX)
    files[MODEL_INFO_FILE] = _info_file(info)
    listed = _read_manifest(model_dir) or {}  # the float32 network's entries stand
    written = write_files(model_dir, files, "the INT8 network")
    return written + _write_manifest(model_dir, files, listed)


def _write_manifest(model_dir: Path, files: Mapping[str, bytes],
                    listed: Mapping[str, Any]) -> list[Path]:
    """`manifest.json`: the `listed` entries and those of the `files` just written."""
    entries = dict(listed, **{name: fingerprint(data) for name, data in files.items()})
    text = json.dumps({"format_version": FORMAT_VERSION, "files": entries}, indent=2) + "\n"
    return write_files(model_dir, {MANIFEST_FILE: text.encode()}, "the artifact's manifest")


def _read_manifest(model_dir: Path) -> dict[str, Any] | None:
    """The manifest's entries (name → bytes, sha256); None without a manifest."""
    path = model_dir / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["files"]
        for name, entry in entries.items():
            if Path(name).name != name or not isinstance(entry["bytes"], int) \
                    or not isinstance(entry["sha256"], str):
                raise ValueError(f"bad entry {name!r}")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) \
            as error:
        raise ClientError(f"{path} is not a valid manifest ({error!r}); serve the complete "
                          f"model.tar.gz written by this container's `train`.") from None
    return dict(entries)


def verify_manifest(model_dir: Path) -> None:
    """Every file `manifest.json` lists is there, with its size and SHA-256; a ClientError
    names the first that is not. Without a manifest: a warning, and nothing checked."""
    entries = _read_manifest(model_dir)
    if entries is None:
        LOG.warning("the model artifact in %s has no %s (written by an earlier version or by "
                    "hand): its files are not checked against one", model_dir, MANIFEST_FILE)
        return
    for name, entry in sorted(entries.items()):
        why = differs_from(model_dir / name, entry)
        if why is not None:
            raise ClientError(
                f"The model artifact in {model_dir} does not match its {MANIFEST_FILE}: {why}. "
                f"It was changed after `train` wrote it, or written or copied only in part; "
                f"serve the complete model.tar.gz written by this container's `train`.")


def _int8_entry(raw: Any) -> Int8Network | None:
    if raw is None:
        return None
    def number(key: str) -> float | None:
        value = raw.get(key)
        return None if value is None else float(value)

    return Int8Network(symbol_file=str(raw["symbol_file"]), params_file=str(raw["params_file"]),
                       float32_layers=tuple(str(name) for name in raw["float32_layers"]),
                       calibration_images=int(raw["calibration_images"]),
                       fidelity_map=number("fidelity_map"), labels_map=number("labels_map"),
                       float32_labels_map=number("float32_labels_map"))


def read_model_info(model_dir: Path) -> ModelInfo:
    """Check the artifact is complete and readable; a ClientError names what is missing."""
    if not model_dir.is_dir():
        raise ClientError(
            f"The model folder {model_dir} does not exist: give the folder `train` wrote with "
            f"--model-dir (predict, evaluate), or point SAGEMAKER_BASE_DIR at the tree whose "
            f"model/ holds it (serve).")
    missing = [name for name in (SYMBOL_FILE, PARAMS_FILE, MODEL_INFO_FILE)
               if not (model_dir / name).is_file()]
    if missing:
        raise ClientError(
            f"The model artifact in {model_dir} is incomplete: missing {', '.join(missing)}. "
            f"Serve the folder (or model.tar.gz) written by this container's `train`."
        )
    try:
        raw = json.loads((model_dir / MODEL_INFO_FILE).read_text(encoding="utf-8"))
        info = ModelInfo(classes=tuple(str(c) for c in raw["classes"]),
                         image_shape=int(raw["image_shape"]),
                         base_network=str(raw["base_network"]),
                         nms_threshold=float(raw["nms_threshold"]),
                         format_version=int(raw.get("format_version", FORMAT_VERSION)),
                         int8=_int8_entry(raw.get("int8")))
    except (ValueError, KeyError, TypeError) as error:
        raise ClientError(
            f"{model_dir / MODEL_INFO_FILE} is not a valid model description ({error!r}); "
            f"it needs classes, image_shape, base_network and nms_threshold."
        ) from None
    if info.format_version > FORMAT_VERSION:
        raise ClientError(
            f"{model_dir / MODEL_INFO_FILE} has format_version {info.format_version}; this "
            f"container reads up to {FORMAT_VERSION}. Serve it with a newer image."
        )
    return info


def load_exported_network(model_dir: Path, ctx: Sequence[mx.Context] | mx.Context,
                          int8: bool = False) -> gluon.SymbolBlock:
    """The exported inference network (outputs: class ids, scores, boxes in input pixels): the
    float32 one, or with `int8` the quantized one (whose presence the caller checked), once
    the files match the artifact's manifest."""
    symbol, params = (INT8_SYMBOL_FILE, INT8_PARAMS_FILE) if int8 else (SYMBOL_FILE, PARAMS_FILE)
    verify_manifest(model_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return gluon.SymbolBlock.imports(str(model_dir / symbol), ["data"],
                                             str(model_dir / params), ctx=ctx)
        except (mx.base.MXNetError, AssertionError, ValueError) as error:
            # MXNet's message may start with a C++ traceback; its last line says what failed.
            lines = [line for line in str(error).splitlines() if line.strip()]
            raise ClientError(
                f"The model files in {model_dir} ({symbol}, {params}) cannot be "
                f"loaded: {lines[-1] if lines else type(error).__name__}"
            ) from None
