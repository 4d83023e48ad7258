"""user_json: the checks made in one pass over the text give the verdicts and messages of the
leaf-by-leaf walk, which runs only for text that may hold a problem."""

from __future__ import annotations

import json

import pytest

from ssd_sagemaker import user_json
from ssd_sagemaker.user_json import MAX_DEPTH, BadJSON, parse_json

ANNOTATION = json.dumps({
    "file": "a.jpg", "image_size": [{"width": 500, "height": 400, "depth": 3}],
    "annotations": [{"class_id": 1, "left": 1.5, "top": 2, "width": 3, "height": 4}] * 50,
    "categories": [{"class_id": i, "name": f"class {i} [x]"} for i in range(80)]})


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def walked(text: str) -> str | None:
    """The walk's verdict on the parsed value (None: accepted)."""
    try:
        user_json._check_tree(json.loads(text))
    except BadJSON as problem:
        return str(problem)
    return None


def test_an_ordinary_document_is_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    def walk(value: object) -> None:
        raise AssertionError("walked")
    monkeypatch.setattr(user_json, "_check_tree", walk)
    assert parse_json(ANNOTATION.encode())["categories"][79]["name"] == "class 79 [x]"


@pytest.mark.parametrize(("text", "accepted"), [
    (nested(MAX_DEPTH), True), (nested(MAX_DEPTH + 1), False), (nested(MAX_DEPTH + 5), False),
    ('{"a": ' + nested(MAX_DEPTH - 1) + "}", True), ('{"a": ' + nested(MAX_DEPTH) + "}", False),
    # brackets inside strings are text: they neither hide nor add depth
    ('["]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", ' + nested(MAX_DEPTH) + "]", False),
    ('["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"[["]', True),
    ('{"name": "\\ud800"}', False), ('{"\\uDC00": 1}', False), ('["\\\\ud800"]', True),
    ('["\\ud83d\\ude00"]', True),
    ("[1e400]", False), ("[-1E+400]", False), ("[1e308]", True), ("[1" + "0" * 310 + "]", False),
    ("[1" + "0" * 250 + "]", True), ("[" + "9" * 300 + ".5e-5]", True),
    ("[" + "9" * 199 + "e99]", True), ("[1E0400]", False), ("[2.5e+400]", False),
    ('{"file": "image000e000.jpg", "n": "' + "1" * 300 + '"}', True),  # in strings: text
])
def test_the_one_pass_verdict_is_the_walks(text: str, accepted: bool) -> None:
    expected = walked(text)
    try:
        parse_json(text.encode())
        found = None
    except BadJSON as problem:
        found = str(problem)
    assert found == expected
    assert (found is None) == accepted


def test_a_string_holding_a_raw_surrogate_is_refused() -> None:
    with pytest.raises(BadJSON, match="lone surrogate"):
        parse_json('{"name": "\ud800"}')
