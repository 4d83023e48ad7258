"""The response format a request asks for (`Accept`, else `SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`);
its detection limits are read by `attributes.py`.

Existing clients send no Accept (or `*/*`, or `application/json`) and no attributes: they get the
built-in algorithm's JSON, unchanged. Everything else is opt-in.
"""

from __future__ import annotations

import enum

from ssd_sagemaker.serving.request_errors import NotAcceptable
from ssd_sagemaker.variables import SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT

JSON_LINES = "application/jsonlines"  # batch requests and their answers (serving/batches.py)
TRUE_VALUES = frozenset({"", "1", "true", "yes"})


class ResponseFormat(enum.Enum):
    """The response bodies the server can produce, with their Content-Type."""

    JSON = "application/json"                  # the built-in's {"prediction": [...]}
    VERBOSE_JSON = "application/json;verbose"  # + class names and image size
    ANNOTATION_JSON = "application/json;annotation=1"  # the built-in's annotation style, pixels
    JPEG = "image/jpeg"                        # the image with labelled boxes drawn
    PNG = "image/png"

    @property
    def content_type(self) -> str:
        return self.value.split(";")[0]

    @property
    def is_image(self) -> bool:
        """The response draws on the decoded pixels (not only on the detections)."""
        return self in (ResponseFormat.JPEG, ResponseFormat.PNG)


SUPPORTED_ACCEPT = tuple(f.value for f in ResponseFormat)


def _media_ranges(header: str) -> list[tuple[float, str, dict[str, str]]]:
    """`Accept` as (quality, media type, parameters), best first (ties keep header order)."""
    ranges = []
    for index, item in enumerate(header.split(",")):
        media, *params = [part.strip() for part in item.split(";")]
        if not media:
            continue
        options = {}
        for param in params:
            key, _, value = param.partition("=")
            options[key.strip().lower()] = value.strip().strip('"').lower()
        try:
            quality = float(options.pop("q", "1") or "1")
        except ValueError:
            quality = 1.0
        ranges.append((-quality, index, media.lower(), options))
    return [(-q, media, options) for q, _, media, options in sorted(ranges) if q < 0]


def _format_for(media: str, options: dict[str, str]) -> ResponseFormat | None:
    if media in ("application/json", JSON_LINES):  # one image's JSON is one JSON line
        if options.get("annotation") in TRUE_VALUES - {""}:
            return ResponseFormat.ANNOTATION_JSON
        if options.get("verbose") in TRUE_VALUES:  # a bare `;verbose` parses as ""
            return ResponseFormat.VERBOSE_JSON
        return ResponseFormat.JSON
    if media in ("application/*", "*/*"):
        return ResponseFormat.JSON
    if media in ("image/jpeg", "image/*"):
        return ResponseFormat.JPEG
    if media == "image/png":
        return ResponseFormat.PNG
    return None


def _with_default(accept: str | None, default: str) -> str:
    """`accept`, or `default` (`SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`) when the request sends
    none or `*/*`, as the inference toolkit does."""
    if not accept or not accept.strip() or accept.strip() == "*/*":
        return default
    return accept


def response_format(accept: str | None, default: str = "") -> ResponseFormat:
    """The best format the client accepts; no Accept at all (or `*/*`) means `default`, else
    the default JSON."""
    accept = _with_default(accept, default)
    if not accept.strip():
        return ResponseFormat.JSON
    for _, media, options in _media_ranges(accept):
        chosen = _format_for(media, options)
        if chosen is not None:
            return chosen
    raise NotAcceptable(f"cannot answer with Accept '{accept}'; accepted response types: "
                        f"{', '.join(SUPPORTED_ACCEPT)} (or */*)")


def batch_line_format(accept: str | None, default: str = "") -> ResponseFormat:
    """The format of each line of a batch's `application/jsonlines` answer: Accept
    `application/jsonlines` (or `application/json`) with the same parameters as a single image's
    JSON (`;verbose`, `;annotation=1`); no Accept, `*/*`: `default`, else the default JSON."""
    chosen_accept = _with_default(accept, default) or JSON_LINES
    for _, media, options in _media_ranges(chosen_accept):
        chosen = _format_for(media, options)
        if chosen is not None and not chosen.is_image:
            return chosen
    source = (f" ({SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT}: the request sent none or */*)"
              if default and chosen_accept == default != accept else "")
    raise NotAcceptable(f"cannot answer a batch with Accept '{chosen_accept}'{source}; a batch "
                        f"is answered with {JSON_LINES}, one JSON answer per image: accept "
                        f"{JSON_LINES} "
                        f"(;verbose or ;annotation=1 as for one image) or */*")
