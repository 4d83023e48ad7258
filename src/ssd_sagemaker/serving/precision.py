"""The arithmetic `serve` and `predict` run the network in (`SSD_INFERENCE_PRECISION`), checked
against the artifact and the hardware before anything is served, so a request never meets a
network that cannot run:

| value | network | where it runs |
|---|---|---|
| `float32` (default) | the exported float32 network | every CPU and GPU |
| `bfloat16` | the float32 network converted by MXNet AMP (convolutions in bfloat16) | CPUs with avx512_bf16 or amx_bf16 |
| `int8` | the INT8 network `quantize=int8` wrote beside the float32 one | CPUs (oneDNN; AVX2 and up) |
| `auto` | `int8` on a CPU when the INT8 network met both fidelity goals at calibration, else `float32` | anywhere |

`auto` takes int8 only when `model_info.json` records that the INT8 network met both goals on
the calibration images (`model/quantization.py`: agreement with float32 >= 0.95 and mAP against
the labels within 0.01 of float32's), and never bfloat16: its speed and fidelity could not be
measured on the machines this was built on (no bfloat16 instructions). Detections are
post-processed identically whatever the precision (same NMS in the graph, same selection and
rendering).
"""  # noqa: E501 - the table's rows are Markdown, which cannot wrap

from __future__ import annotations

import logging
from pathlib import Path

from ssd_sagemaker.cpu_features import cpu_has_bfloat16
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.artifact import INT8_PARAMS_FILE, INT8_SYMBOL_FILE, ModelInfo
from ssd_sagemaker.model.quantization import meets_fidelity_goals
from ssd_sagemaker.variables import SSD_INFERENCE_PRECISION

LOG = logging.getLogger(__name__)

VARIABLE = SSD_INFERENCE_PRECISION


def has_int8_network(info: ModelInfo, model_dir: Path) -> bool:
    """The artifact lists an INT8 network and its files are there."""
    return info.int8 is not None and all((model_dir / name).is_file()
                                         for name in (INT8_SYMBOL_FILE, INT8_PARAMS_FILE))


def resolve_inference_precision(requested: str, info: ModelInfo, model_dir: Path, gpus: int,
                                bfloat16_cpu: bool | None = None) -> str:
    """The precision to serve in: `requested` when this artifact and hardware can run it (a
    ClientError says why not and what to do), or what `auto` picks."""
    bfloat16_cpu = cpu_has_bfloat16() if bfloat16_cpu is None else bfloat16_cpu
    int8 = has_int8_network(info, model_dir)
    if requested == "auto":
        chosen = "int8" if int8 and not gpus and info.int8 is not None \
            and meets_fidelity_goals(info.int8) else "float32"
        LOG.info("%s=auto: serving in %s", VARIABLE, chosen)
        return chosen
    if requested == "bfloat16" and (gpus or not bfloat16_cpu):
        where = ("on GPUs (this server has GPUs)" if gpus else
                 "on this CPU: it has no avx512_bf16 or amx_bf16 instructions")
        raise ClientError(f"{VARIABLE}=bfloat16 cannot run {where}; use float32 (or int8 with "
                          f"a model trained with quantize=int8), or an instance whose CPU has "
                          f"them (Intel Cooper Lake, Sapphire Rapids or later; AMD Zen 4 or "
                          f"later).")
    if requested == "int8":
        if gpus:
            raise ClientError(f"{VARIABLE}=int8 runs on CPUs only (oneDNN), and this server "
                              f"has GPUs; use float32, or a CPU instance.")
        if not int8:
            raise ClientError(f"{VARIABLE}=int8, but the model artifact in {model_dir} has no "
                              f"INT8 network ({INT8_SYMBOL_FILE}, {INT8_PARAMS_FILE}, listed in "
                              f"model_info.json); train with the hyperparameter quantize=int8, "
                              f"or serve with {VARIABLE}=float32.")
    return requested
