"""What a request asks for beyond the image: the response format (from `Accept`) and the
detection limits (from `X-Amzn-SageMaker-Custom-Attributes`).

Existing clients send no Accept (or `*/*`, or `application/json`) and no attributes: they get the
built-in algorithm's JSON, unchanged. Everything else is opt-in.
"""

from __future__ import annotations

import enum

from ssd_sagemaker.serving.config import LIMIT_ATTRIBUTES, LIMIT_PARSERS, DetectionLimits
from ssd_sagemaker.serving.request_errors import InvalidAttribute, NotAcceptable

CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
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
    if media == "application/json":
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


def response_format(accept: str | None) -> ResponseFormat:
    """The best format the client accepts; no Accept at all means the default JSON."""
    if not accept or not accept.strip():
        return ResponseFormat.JSON
    for _, media, options in _media_ranges(accept):
        chosen = _format_for(media, options)
        if chosen is not None:
            return chosen
    raise NotAcceptable(f"cannot answer with Accept '{accept}'; accepted response types: "
                        f"{', '.join(SUPPORTED_ACCEPT)} (or */*)")


def detection_limits(custom_attributes: str | None, defaults: DetectionLimits) -> DetectionLimits:
    """`defaults` overridden by `score_threshold=..,max_detections=..,tile=..,overlap=..`
    (comma or semicolon separated; `overlap` is short for `tile_overlap`). Unknown attributes
    are someone else's and are ignored; a known one with a bad value is the client's mistake
    (400 naming it)."""
    texts = {}
    for item in (custom_attributes or "").replace(";", ",").split(","):
        key, sep, raw = item.partition("=")
        key = LIMIT_ATTRIBUTES.get(key.strip().lower(), key.strip().lower())
        if sep and key in LIMIT_PARSERS:
            texts[key] = raw
    try:
        return defaults.overridden(texts)
    except ValueError as error:
        raise InvalidAttribute(f"custom attribute {error} "
                               f"({CUSTOM_ATTRIBUTES_HEADER} header)") from None
