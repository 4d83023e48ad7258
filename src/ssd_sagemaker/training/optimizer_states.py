"""Reading a checkpoint's optimizer state (`checkpoint-NNNN.states`) without running its bytes.

MXNet writes the state as a pickle of `({index: state}, optimizer)` and reads it back with
`pickle.loads` (`Trainer.load_states` → `Updater.set_states`), which runs whatever callable the
file names. The checkpoint folder is restored from S3, so whoever can write there could run
code under the job's role. This reader admits only what those files hold: NDArrays (rebuilt from
their raw bytes by MXNet's data loader), numbers, strings, tuples, lists, dicts, and the
optimizer's and learning-rate scheduler's fields as plain records (their classes are never
constructed). Anything else is refused with `RefusedStates`, naming the file and the culprit,
and nothing in the file is run. The fields are then copied onto the job's own optimizer.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mxnet as mx
from mxnet import gluon

from ssd_sagemaker.errors import ClientError

# The optimizers `hyperparameters.py` offers and the schedules MXNet ships: read as records.
_RECORD_CLASSES = {
    "mxnet.optimizer.optimizer": frozenset({"SGD", "Adam", "RMSProp", "AdaDelta"}),
    "mxnet.lr_scheduler": frozenset({"FactorScheduler", "MultiFactorScheduler",
                                     "PolyScheduler", "CosineScheduler"}),
}
_PLAIN = (int, float, str, bool, type(None))
_NOT_COPIED = frozenset({"param_dict"})  # the Trainer sets it from the job's parameters


class _NotData(Exception):
    """What the reader found that is not optimizer-state data (pickle's own errors too)."""


class RefusedStates(ClientError):
    """An optimizer-state file holding something an optimizer state never holds."""


class _Record:
    """The fields of a pickled optimizer or scheduler, without its class being built."""

    qualified_name = ""

    def __new__(cls, *args: Any) -> _Record:
        if args:
            raise _NotData(f"{cls.qualified_name} is built with arguments")
        record = super().__new__(cls)
        record.fields = {}
        return record

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
            raise _NotData(f"{self.qualified_name}'s fields are not a dict")
        self.fields = state

    fields: dict[str, Any]


class _PickledArray:
    """An NDArray's pickle (`NDArray(None)` then its raw bytes), kept as bytes until checked."""

    def __init__(self, *args: Any) -> None:
        if args != (None,):
            raise _NotData("an NDArray is built with a handle")
        self.raw: bytes | None = None

    def __setstate__(self, state: Any) -> None:
        raw = state.get("handle") if isinstance(state, dict) else None
        if not isinstance(raw, (bytes, bytearray)):
            raise _NotData("an NDArray without its bytes")
        self.raw = bytes(raw)


def _bytearray(data: Any) -> bytearray:
    if not isinstance(data, bytes):  # bytearray(10**12) would allocate a terabyte
        raise _NotData("a bytearray of something other than bytes")
    return bytearray(data)


class _DataOnlyUnpickler(pickle.Unpickler):
    """`find_class` is where a pickle reaches code (every global, REDUCE/NEWOBJ/INST target
    and extension-registry entry goes through it): only stand-ins come out."""

    _records: dict[str, type[_Record]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("mxnet.ndarray.ndarray", "NDArray"):
            return _PickledArray
        if (module, name) == ("builtins", "bytearray"):
            return _bytearray
        if name in _RECORD_CLASSES.get(module, ()):
            qualified = f"{module}.{name}"
            return self._records.setdefault(
                qualified, type(name, (_Record,), {"qualified_name": qualified}))
        raise _NotData(f"it names {module}.{name}, which an optimizer state never holds")

    def persistent_load(self, pid: Any) -> Any:
        raise _NotData("it holds a persistent reference")


def _arrays(value: Any, where: str) -> Any:
    """A per-parameter state with its stand-ins turned into NDArrays: an NDArray, None, or
    tuples/lists of them (momentum, Adam's moments, a float32 master copy)."""
    if isinstance(value, _PickledArray):
        array = mx.nd.NDArray(None)
        array.__setstate__({"handle": bytearray(value.raw or b"")})  # MXNet's data parser
        return array
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        return type(value)(_arrays(item, where) for item in value)
    raise _NotData(f"{where} holds a {type(value).__name__}, not arrays")


def _plain(value: Any) -> bool:
    """Numbers, strings and containers of them: safe to copy onto an optimizer."""
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (tuple, list)):
        return all(_plain(item) for item in value)
    if isinstance(value, dict):
        return all(_plain(key) and _plain(item) for key, item in value.items())
    return False


def _check_fields(record: _Record, schedule_allowed: bool = True) -> None:
    """An optimizer's fields are plain data, but for its learning-rate scheduler, whose own
    fields are plain data."""
    for name, value in record.fields.items():
        if isinstance(value, _Record) and name == "lr_scheduler" and schedule_allowed \
                and value.qualified_name.startswith("mxnet.lr_scheduler."):
            _check_fields(value, schedule_allowed=False)
        elif not _plain(value):
            raise _NotData(f"{record.qualified_name}'s {name} holds a {type(value).__name__}")


@dataclass
class OptimizerStates:
    """One states file, checked: each parameter's state and the optimizer's fields."""

    states: dict[int, Any]
    optimizer: _Record


def read_optimizer_states(path: Path, data: bytes) -> OptimizerStates:
    """`data` (the bytes of `path`) read as MXNet's states pickle, admitting only data; a
    `RefusedStates` names the file and what it holds otherwise."""
    try:
        loaded = _DataOnlyUnpickler(io.BytesIO(data)).load()
        if not (isinstance(loaded, tuple) and len(loaded) == 2):
            raise _NotData(f"it holds a {type(loaded).__name__}, not the pair (states, "
                           f"optimizer) that Trainer.save_states writes")
        raw_states, optimizer = loaded
        if not isinstance(raw_states, dict):
            raise _NotData(f"its states are a {type(raw_states).__name__}, not a dict")
        states = {}
        for index, value in raw_states.items():
            if not isinstance(index, int) or isinstance(index, bool):
                raise _NotData(f"it has a state keyed by {index!r}, not an index")
            states[index] = _arrays(value, f"the state of parameter {index}")
        if not isinstance(optimizer, _Record) \
                or not optimizer.qualified_name.startswith("mxnet.optimizer."):
            raise _NotData(f"it holds a {type(optimizer).__name__} where the optimizer goes")
        _check_fields(optimizer)
    except (_NotData, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            KeyError, IndexError, MemoryError, RecursionError, mx.base.MXNetError) as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        culprit = lines[-1] if lines else repr(error)
        raise RefusedStates(
            f"{path.name} was refused as optimizer state: {culprit}; "
            f"only arrays, numbers, tuples, lists and dicts are read from it (nothing in it "
            f"was run)") from None
    return OptimizerStates(states, optimizer)


def _check_against(saved: OptimizerStates, path: Path, optimizer: Any,
                   params: Sequence[gluon.Parameter]) -> None:
    """The states fit this job: same optimizer, one state per parameter of its shape."""
    ours = f"{type(optimizer).__module__}.{type(optimizer).__name__}"
    if saved.optimizer.qualified_name != ours:
        raise RefusedStates(f"{path.name} holds the state of {saved.optimizer.qualified_name}; "
                            f"this job trains with {ours}")
    for index, state in saved.states.items():
        if not 0 <= index < len(params):
            raise RefusedStates(f"{path.name} has a state for parameter {index}; the network "
                                f"has {len(params)}")
        shape = params[index].shape
        pending: list[Any] = [state]
        while pending:
            item = pending.pop()
            if isinstance(item, (tuple, list)):
                pending.extend(item)
            elif item is not None and 0 not in shape and item.shape != shape:
                raise RefusedStates(f"{path.name} has a state of shape {item.shape} for "
                                    f"{params[index].name}, whose shape is {shape}")


def _copy_fields(record: _Record, target: Any) -> None:
    """The record's fields (plain data, `_check_fields`) onto `target`'s plain fields of the
    same names (counters, rates, the schedule's progress); a scheduler of the same class gets
    its own fields."""
    for name, value in record.fields.items():
        if name in _NOT_COPIED or not hasattr(target, name):
            continue
        current = getattr(target, name)
        if isinstance(value, _Record):
            if current is not None and value.qualified_name == \
                    f"{type(current).__module__}.{type(current).__name__}":
                _copy_fields(value, current)
        elif _plain(current):  # plain onto plain: never over the job's own objects
            setattr(target, name, value)


def check_optimizer_states(trainer: gluon.Trainer, path: Path, data: bytes) -> None:
    """Refuse (`RefusedStates`) what `restore_optimizer_states` would, changing nothing: so
    a checkpoint is refused before its weights are loaded."""
    _check_against(read_optimizer_states(path, data), path, trainer._optimizer, trainer._params)


def restore_optimizer_states(trainer: gluon.Trainer, path: Path, data: bytes) -> None:
    """What `Trainer.load_states(path)` does, through the data-only reader: every device's
    updater (or the kvstore's, where it updates) gets its own copy of the states, and the
    job's optimizer takes the saved counters and schedule. Everything is checked before
    anything changes. Call it after the weights are loaded: loading weights into a trainer
    whose kvstore updates resets that kvstore, and its updater's states with it."""
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    updaters = [trainer._kvstore._updater] if trainer._update_on_kvstore else trainer._updaters
    copies = [read_optimizer_states(path, data) for _ in updaters]
    for saved in copies:
        _check_against(saved, path, updaters[0].optimizer, trainer._params)
    for updater, saved in zip(updaters, copies):
        updater.states = saved.states
        updater.states_synced = dict.fromkeys(saved.states, False)
    _copy_fields(copies[0].optimizer, updaters[0].optimizer)
    for updater in updaters:
        updater.optimizer = updaters[0].optimizer
    trainer._optimizer = updaters[0].optimizer
    trainer._optimizer.param_dict = dict(enumerate(trainer._params))
