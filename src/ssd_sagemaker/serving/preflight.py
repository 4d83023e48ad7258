"""Checks of the model artifact in the gunicorn master, before any worker is forked: the files
are there, `model_info.json` is valid, the symbol file is a network graph, and the parameters
file is a complete MXNet NDArray list.

The master must not load the network (MXNet's thread pools do not survive a fork), so the
parameters file is checked by walking its headers, not by loading it. A file cut short by a
failed copy or a wrong file under the right name is refused here, with the file named, instead
of every worker failing to boot. What only MXNet can tell (wrong shapes, missing parameters) is
caught when the workers load the model.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import BinaryIO

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.artifact import (
    INT8_PARAMS_FILE,
    INT8_SYMBOL_FILE,
    PARAMS_FILE,
    SYMBOL_FILE,
    ModelInfo,
    read_model_info,
    verify_manifest,
)

NDARRAY_LIST_MAGIC = 0x112
NDARRAY_MAGICS = (0xF993FAC9, 0xF993FACA)  # v2 (legacy shapes) and v3 (numpy shapes)
DENSE_STORAGE = 0
DTYPE_SIZES = {0: 4, 1: 8, 2: 2, 3: 1, 4: 4, 5: 1, 6: 8, 7: 1, 8: 2, 9: 2, 10: 4, 11: 8, 12: 2}


def check_artifact(model_dir: Path, int8: bool = False) -> ModelInfo:
    """The model's description, after checking every file `serve` needs (with `int8`, the
    INT8 network's) and that the files match the artifact's manifest; a ClientError names the
    file and what is wrong with it."""
    info = read_model_info(model_dir)
    symbol, params = (INT8_SYMBOL_FILE, INT8_PARAMS_FILE) if int8 else (SYMBOL_FILE, PARAMS_FILE)
    check_symbol_file(model_dir / symbol)
    check_params_file(model_dir / params)
    verify_manifest(model_dir)
    return info


def check_symbol_file(path: Path) -> None:
    """The exported graph: a JSON object with `nodes` and `heads`."""
    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ClientError(f"{path} is not an MXNet symbol file (not JSON: {error}). Serve the "
                          f"files written by this container's `train`.") from None
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list) \
            or "heads" not in graph:
        raise ClientError(f"{path} is not an MXNet symbol file (no 'nodes' and 'heads'). Serve "
                          f"the files written by this container's `train`.")


class _Truncated(Exception):
    pass


def _read(handle: BinaryIO, fmt: str) -> tuple:
    size = struct.calcsize(fmt)
    data = handle.read(size)
    if len(data) < size:
        raise _Truncated
    return struct.unpack(fmt, data)


def check_params_file(path: Path) -> None:
    """A complete NDArray list: the list header, then each dense array's header and data, then
    the names. Array layouts it does not know (sparse, unknown dtypes) are left to MXNet."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        try:
            magic, _reserved = _read(handle, "<QQ")
        except _Truncated:
            magic = None
        if magic != NDARRAY_LIST_MAGIC:
            raise ClientError(f"{path} is not an MXNet parameters file (it does not start with "
                              f"the NDArray list header). Serve the files written by this "
                              f"container's `train`.")
        try:
            (count,) = _read(handle, "<Q")
            for _ in range(count):
                if not _skip_array(handle):
                    return
                if handle.tell() > size:
                    raise _Truncated
            (names,) = _read(handle, "<Q")
            for _ in range(names):
                (length,) = _read(handle, "<Q")
                handle.seek(length, 1)
            if handle.tell() > size:
                raise _Truncated
        except _Truncated:
            raise ClientError(f"{path} is truncated ({size} bytes): the file ends before its "
                              f"last parameter. Copy the model artifact again.") from None


def _skip_array(handle: BinaryIO) -> bool:
    """Seek past one dense array; False when its layout is not one this check knows."""
    magic, storage = _read(handle, "<Ii")
    if magic not in NDARRAY_MAGICS or storage != DENSE_STORAGE:
        return False
    (ndim,) = _read(handle, "<i")
    if ndim == -1 or (ndim == 0 and magic == NDARRAY_MAGICS[0]):
        return True  # an unknown shape: no data follows
    if ndim < 0:
        return False
    dims = _read(handle, f"<{ndim}q") if ndim else ()  # v3 ndim 0: a scalar
    _dev_type, _dev_id, dtype = _read(handle, "<iii")
    if dtype not in DTYPE_SIZES or any(d < 0 for d in dims):
        return False
    elements = 1
    for dim in dims:
        elements *= dim
    handle.seek(elements * DTYPE_SIZES[dtype], 1)
    return True
