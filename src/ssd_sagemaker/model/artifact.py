"""The model artifact in `/opt/ml/model`: the built-in algorithm's files (exported symbol and
parameters, `hyperparams.json`) plus `model_info.json` with what serving needs."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mxnet as mx
from mxnet import gluon

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.storage import serialized_files, write_files

MODEL_PREFIX = "model_algo_1"
SYMBOL_FILE = f"{MODEL_PREFIX}-symbol.json"
PARAMS_FILE = f"{MODEL_PREFIX}-0000.params"
HYPERPARAMS_FILE = "hyperparams.json"
MODEL_INFO_FILE = "model_info.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelInfo:
    """What a predictor needs besides the network: names, input size, provenance."""

    classes: tuple[str, ...]
    image_shape: int
    base_network: str
    nms_threshold: float
    format_version: int = FORMAT_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def save_artifact(net: gluon.HybridBlock, model_dir: Path, info: ModelInfo,
                  hyperparameters: Mapping[str, Any]) -> list[Path]:
    """Export `net` in inference mode (NMS included) with the side files, all or nothing: a
    full disk leaves no partial artifact and is a ClientError naming the folder and the
    artifact's size."""
    net.hybridize()  # (re)trace in inference mode for export
    with mx.autograd.predict_mode():
        net(mx.nd.zeros((1, 3, info.image_shape, info.image_shape),
                        ctx=next(iter(net.collect_params().values())).list_ctx()[0]))
    files = serialized_files(lambda folder: net.export(str(folder / MODEL_PREFIX), epoch=0),
                             [SYMBOL_FILE, PARAMS_FILE])
    info_dict = asdict(info)
    info_dict["classes"] = list(info.classes)
    files[HYPERPARAMS_FILE] = (json.dumps(dict(hyperparameters), indent=2) + "\n").encode()
    files[MODEL_INFO_FILE] = (json.dumps(info_dict, indent=2) + "\n").encode()
    return write_files(model_dir, files, "the model artifact")


def read_model_info(model_dir: Path) -> ModelInfo:
    """Check the artifact is complete and readable; a ClientError names what is missing."""
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
                         format_version=int(raw.get("format_version", FORMAT_VERSION)))
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


def load_exported_network(model_dir: Path, ctx: Sequence[mx.Context] | mx.Context
                          ) -> gluon.SymbolBlock:
    """The exported inference network (outputs: class ids, scores, boxes in input pixels)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return gluon.SymbolBlock.imports(str(model_dir / SYMBOL_FILE), ["data"],
                                             str(model_dir / PARAMS_FILE), ctx=ctx)
        except (mx.base.MXNetError, AssertionError, ValueError) as error:
            # MXNet's message may start with a C++ traceback; its last line says what failed.
            lines = [line for line in str(error).splitlines() if line.strip()]
            raise ClientError(
                f"The model files in {model_dir} ({SYMBOL_FILE}, {PARAMS_FILE}) cannot be "
                f"loaded: {lines[-1] if lines else type(error).__name__}"
            ) from None
