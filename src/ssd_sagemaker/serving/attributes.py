"""The detection limits a request asks for in `X-Amzn-SageMaker-Custom-Attributes`
(`score_threshold=..,max_detections=..,draw_threshold=..,tile=..,overlap=..`), over the
server's defaults. Existing clients send none and get the built-in algorithm's answer."""

from __future__ import annotations

from ssd_sagemaker.serving.config import LIMIT_ATTRIBUTES, LIMIT_PARSERS, DetectionLimits
from ssd_sagemaker.serving.request_errors import InvalidAttribute

CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"


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
