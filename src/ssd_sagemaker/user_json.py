"""JSON written by users (config files, annotation files, manifest records) read into plain
values, or a `BadJSON` whose message says in words what is wrong.

Python's `json` alone is not enough for hostile input: it raises `RecursionError` on deep
nesting and a bare `ValueError` on integers over 4,300 digits, and it accepts what later code
cannot handle: integers too large for a float (`float()` raises `OverflowError`), `1e400`
(infinity), `NaN`, and lone surrogates (`"\\udead"`, not Unicode: writing them as UTF-8
fails). All of these become `BadJSON` here, so every reader has one exception to name its file
for. The message completes a sentence whose subject is the file or record ("… is not UTF-8 …").
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

# Deeper than any config or annotation file this algorithm reads (they nest 2-4 levels), far
# below the interpreter's recursion limit.
MAX_DEPTH = 32
_FLOAT_MAX = sys.float_info.max
_SHOWN = 40  # characters of an offending value shown in a message

_BYTE_ORDER_MARKS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                     (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


class BadJSON(ValueError):
    """The document is not JSON this program can use; the message says why and what to do."""


def shown(value: Any, limit: int = _SHOWN) -> str:
    """`value` for a message, bounded: a string quoted (surrogates and control characters
    escaped), anything else as JSON."""
    if isinstance(value, str):
        text = repr(value) if value.isprintable() else ascii(value)  # surrogates: unprintable
    else:
        try:
            text = json.dumps(value)
        except (TypeError, ValueError, RecursionError):
            text = ascii(type(value).__name__)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def decode_utf8(data: bytes) -> str:
    """The text of `data` (a UTF-8 byte order mark is allowed), else `BadJSON`."""
    for mark, encoding in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            raise BadJSON(f"is {encoding} text (it starts with a {encoding} byte order mark); "
                          f"save it as UTF-8")
    if b"\x00" in data:  # JSON has no raw NUL; UTF-16/32 without a byte order mark has many
        raise BadJSON(f"holds a NUL byte at offset {data.index(0)} (UTF-16 or UTF-32 text "
                      f"without a byte order mark?); save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BadJSON(f"is not UTF-8 text: byte 0x{data[error.start]:02x} at offset "
                      f"{error.start} is not UTF-8 (Latin-1 or another legacy encoding?); save "
                      f"it as UTF-8") from None


def _constant(name: str) -> Any:
    raise BadJSON(f"holds {name}, which is not JSON (JSON has no NaN or infinity); write a "
                  f"number")


def _number_problem(number: int | float) -> str | None:
    """Why a parsed number is unusable: an int or float beyond what a 64-bit float holds."""
    if isinstance(number, float):
        return None if math.isfinite(number) else (
            "holds a number too large for a 64-bit float (at most about 1.8e308)")
    if -_FLOAT_MAX <= number <= _FLOAT_MAX:
        return None
    digits = str(abs(number))
    return (f"holds the integer {digits[:20]}... ({len(digits)} digits), too large for any "
            f"quantity here (at most about 1.8e308)")


def _text_problem(text: str) -> str | None:
    if text.isascii() or not _has_surrogate(text):
        return None
    return (f"holds the string {shown(text)} with a lone surrogate escape (\\ud800-\\udfff "
            f"alone is not a character); write the character itself or a valid surrogate pair")


def _leaf_problem(leaf: Any) -> str | None:
    if isinstance(leaf, str):
        return _text_problem(leaf)
    if isinstance(leaf, (int, float)) and not isinstance(leaf, bool):
        return _number_problem(leaf)
    return None


_TOO_DEEP = (f"is nested more than {MAX_DEPTH} levels deep; no file this algorithm reads "
             f"needs more than a few levels")


def _check_tree(value: Any) -> None:
    """Depth, numbers and strings of a parsed value, walked without recursion (it may be
    deep); the first problem found is raised."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if not isinstance(item, (dict, list)):
            problem = _leaf_problem(item)
            if problem:
                raise BadJSON(problem)
            continue
        if depth >= MAX_DEPTH:
            raise BadJSON(_TOO_DEEP)
        children = item.values() if isinstance(item, dict) else item
        for key in item if isinstance(item, dict) else ():
            problem = _text_problem(key)
            if problem:
                raise BadJSON(problem)
        pending.extend((child, depth + 1) for child in children)


# What in a document's text may make `_check_tree` refuse its value: an escaped surrogate in a
# string; a digit run or an exponent long enough to overflow a float (a 200-digit run, or an
# exponent of 3 digits: 199 digits and e99 stay finite); containers nested deeper than
# MAX_DEPTH. Text without any parses to a value the walk would pass: so an ordinary file is
# parsed in one pass, and only a suspect one is walked leaf by leaf (the walk cost more than the
# parse on annotation files repeating a category list). The scans are substring searches in C
# (a match inside a string only costs a walk); regular expressions were slower than the parse.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789E", b"000000000e")
_OVERFLOWING = (b"0" * 200, b"0e000", b"0e+000", b"0e-000")  # in digits-as-zero text
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INNERMOST = re.compile(r"\[\]|\{\}")


def _nesting(text: str) -> int:
    """How many levels the containers of valid JSON `text` nest (counted up to MAX_DEPTH + 1):
    strings removed (their brackets are text), then the innermost pairs, level by level."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    depth = 0
    while brackets and depth <= MAX_DEPTH:
        brackets = _INNERMOST.sub("", brackets)
        depth += 1
    return depth


def _needs_walk(text: str, raw: bytes) -> bool:
    """Whether `text` (`raw` its UTF-8 bytes) may hold what `_check_tree` refuses."""
    if b"\\u" in raw and _SURROGATE_ESCAPE.search(text):
        return True
    if not text.isascii() and _has_surrogate(text):
        return True
    shape = raw.translate(_DIGITS_AS_ZERO)
    if any(pattern in shape for pattern in _OVERFLOWING):
        return True
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:  # fewer containers than levels allowed
        return False
    return _nesting(text) > MAX_DEPTH


def parse_json(data: bytes | str) -> Any:
    """The value of a JSON document (bytes must be UTF-8), checked as the module says."""
    text = decode_utf8(data) if isinstance(data, (bytes, bytearray)) else data
    try:
        value = json.loads(text, parse_constant=_constant)
    except json.JSONDecodeError as error:
        raise BadJSON(f"is not valid JSON: {error.msg} at line {error.lineno}, column "
                      f"{error.colno}") from None
    except RecursionError:
        raise BadJSON(_TOO_DEEP) from None
    except BadJSON:
        raise
    except ValueError:  # Python refuses to convert integers of more than 4,300 digits
        raise BadJSON(f"holds an integer of more than {sys.get_int_max_str_digits()} digits, "
                      f"too large for any quantity here (at most about 1.8e308)") from None
    raw = bytes(data) if isinstance(data, (bytes, bytearray)) else text.encode("utf-8",
                                                                                "surrogatepass")
    if _needs_walk(text, raw):
        _check_tree(value)  # the walk finds the first problem, as it always did
    return value


__all__ = ["BadJSON", "MAX_DEPTH", "decode_utf8", "parse_json", "shown"]
