"""User-given regular expressions compiled by RE2, whose matching time is linear in the text:
a pattern such as `(\\w+)+!` cannot backtrack for hours as it would with Python's `re`. On the
ground floor, beside `user_json`: the hyperparameter table validates patterns with it and the
network's layer freezing matches with it."""

from __future__ import annotations

from typing import Any

import re2


class RegexError(ValueError):
    """RE2 refused the pattern; the message is RE2's reason."""


def compile_regex(pattern: str) -> Any:
    """`pattern` compiled by RE2; RegexError (with RE2's reason) when RE2 refuses it."""
    options = re2.Options()
    options.log_errors = False  # RE2 would also print the reason to stderr
    try:
        return re2.compile(pattern, options=options)
    except re2.error as error:
        reason = error.args[0] if error.args else error
        reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else reason
        raise RegexError(f"regex error: {reason}") from None
