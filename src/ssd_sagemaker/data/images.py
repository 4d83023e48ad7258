"""Encoded images: format and size read from the header before any decoding, so a decompression
bomb, a truncated upload or a stray non-image file is refused by name and cheaply (a few
kilobytes read, no pixels decoded); then decoding to RGB arrays with OpenCV.

Imports no MXNet: loader worker processes decode here.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

# Far above any photo or aerial tile SSD is trained on (images are resized to 300 or 512 px),
# far below the gigapixels of a decompression bomb; decoding 100 MP takes 300 MB.
MAX_PIXELS = 100_000_000
FORMATS = ("JPEG", "PNG")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# A complete JPEG ends with the EOI marker, a complete PNG with the IEND chunk; some writers
# append padding, so the marker is looked for near the end rather than at it.
TAIL_BYTES = 4096
END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}
TRUNCATED = ("is truncated: the data ends before the image does (an incomplete upload or "
             "copy?); replace the file")


class BadImage(ValueError):
    """The bytes are not a usable image; the message says why (callers prefix the file)."""


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int


def _read_header(stream: BinaryIO) -> ImageHeader:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                header = ImageHeader(str(image.format), *image.size)
    except Image.DecompressionBombError:
        raise BadImage(f"declares more than {2 * Image.MAX_IMAGE_PIXELS} pixels, over the "
                       f"limit of {MAX_PIXELS} (a decompression bomb?); resize it") from None
    except UnidentifiedImageError:
        raise BadImage("is not an image (neither JPEG nor PNG data)") from None
    except (OSError, SyntaxError, ValueError) as error:
        if "truncated" in str(error).lower():
            raise BadImage(TRUNCATED) from None
        raise BadImage(f"has an unreadable image header ({error})") from None
    if header.format not in FORMATS:
        raise BadImage(f"is a {header.format} image; convert it to JPEG or PNG")
    if header.width <= 0 or header.height <= 0:
        raise BadImage(f"declares an empty size {header.width}x{header.height}")
    if header.width * header.height > MAX_PIXELS:
        raise BadImage(f"is {header.width}x{header.height} = {header.width * header.height} "
                       f"pixels, over the limit of {MAX_PIXELS} (a decompression bomb?); "
                       f"resize it")
    return header


def _check_complete(header: ImageHeader, tail: bytes) -> None:
    if END_MARKERS[header.format] not in tail:
        raise BadImage(TRUNCATED)


def inspect_bytes(data: bytes) -> ImageHeader:
    """Format and size of an encoded image, refusing non-images, bombs and truncated data."""
    header = _read_header(io.BytesIO(data))
    _check_complete(header, data[-TAIL_BYTES:])
    return header


def inspect_file(path: Path) -> ImageHeader:
    """As `inspect_bytes`, reading only the header and the tail of the file."""
    try:
        with open(path, "rb") as stream:
            header = _read_header(stream)
            size = stream.seek(0, io.SEEK_END)
            stream.seek(max(0, size - TAIL_BYTES))
            _check_complete(header, stream.read())
    except OSError as error:
        raise BadImage(f"cannot be read ({error.strerror})") from None
    return header


def decode(data: bytes) -> np.ndarray:
    """HWC RGB uint8 pixels of an encoded JPEG or PNG (header checked first: no bombs)."""
    inspect_bytes(data)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadImage("cannot be decoded (corrupt image data); replace the file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
