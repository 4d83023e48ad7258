"""Checks on the encoded bytes before anything is decoded: which format the bytes really are,
the width and height their header declares, and whether the file is complete.

Decoding is where memory goes (width x height x 3 bytes), and a few kilobytes can declare a
gigapixel image, so the size is read from the JPEG frame header (SOF) or the PNG IHDR chunk and
refused above the limit. Decoders quietly fill a truncated JPEG with grey; walking the segments
to the end-of-image marker catches it and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ssd_sagemaker.serving.request_errors import (PayloadTooLarge, UndecodableImage,
                                                  UnsupportedMediaType)

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Formats we recognise only to refuse them with a precise message (415, not "corrupt").
OTHER_FORMATS = ((b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"),
                 (b"MM\x00*", "TIFF"))
# Start-of-frame markers (baseline, progressive, lossless, arithmetic); not DHT/JPG/DAC.
JPEG_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                              0xCE, 0xCF})
JPEG_SOS, JPEG_EOI = 0xDA, 0xD9
JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length field


@dataclass(frozen=True)
class ImageHeader:
    """What the encoded bytes declare, known before decoding."""

    format: str  # "jpeg" | "png"
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def sniff_format(body: bytes) -> str:
    """'jpeg' or 'png' from the magic bytes, whatever Content-Type the client declared."""
    if not body:
        raise UndecodableImage("the request body is empty; send the image's bytes")
    if body.startswith(JPEG_MAGIC):
        return "jpeg"
    if body.startswith(PNG_MAGIC):
        return "png"
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        raise UnsupportedMediaType("the body is a WebP image; send a JPEG or PNG")
    for magic, name in OTHER_FORMATS:
        if body.startswith(magic):
            raise UnsupportedMediaType(f"the body is a {name} image; send a JPEG or PNG")
    raise UndecodableImage(
        f"the body could not be decoded as a JPEG or PNG image: it starts with "
        f"{body[:8].hex(' ')}, not a JPEG (ff d8 ff) or PNG (89 50 4e 47) signature")


def check_image(body: bytes, max_pixels: int) -> ImageHeader:
    """The format and declared size of a complete JPEG/PNG no larger than `max_pixels`, else
    the RequestError that says why not (empty, other format, truncated, corrupt, too large)."""
    image_format = sniff_format(body)
    header = _jpeg_header(body) if image_format == "jpeg" else _png_header(body)
    if header.width <= 0 or header.height <= 0:
        raise UndecodableImage(f"the {image_format.upper()} header declares an empty image "
                               f"({header.width} x {header.height})")
    if header.pixels > max_pixels:
        raise PayloadTooLarge(
            f"the image is {header.width} x {header.height} = {header.pixels} pixels, above "
            f"the limit of {max_pixels} (SSD_MAX_IMAGE_PIXELS); resize it before sending")
    return header


def _truncated(image_format: str, where: str) -> UndecodableImage:
    return UndecodableImage(f"the {image_format} is truncated: the data ends {where}; send the "
                            f"whole file")


def _jpeg_segments(body: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, payload offset, payload length) for each segment up to and including EOI;
    entropy-coded scan data after each SOS is skipped."""
    pos, end = 2, len(body)
    while True:
        if pos >= end:
            raise _truncated("JPEG", "before the end-of-image marker")
        if body[pos] != 0xFF:
            raise UndecodableImage(f"the JPEG is corrupt: expected a marker at byte {pos}")
        while pos < end and body[pos] == 0xFF:  # fill bytes may pad markers
            pos += 1
        if pos >= end:
            raise _truncated("JPEG", "inside a marker")
        marker = body[pos]
        pos += 1
        if marker in JPEG_STANDALONE or marker == JPEG_EOI:
            yield marker, pos, 0
            if marker == JPEG_EOI:
                return
            continue
        if pos + 2 > end:
            raise _truncated("JPEG", f"inside the header of segment 0x{marker:02X}")
        length = int.from_bytes(body[pos:pos + 2], "big")
        if length < 2:
            raise UndecodableImage(f"the JPEG is corrupt: segment 0x{marker:02X} at byte {pos} "
                                   f"has length {length}")
        if pos + length > end:
            raise _truncated("JPEG", f"inside segment 0x{marker:02X}")
        yield marker, pos + 2, length - 2
        pos += length
        if marker == JPEG_SOS:
            pos = _end_of_scan(body, pos)


def _end_of_scan(body: bytes, pos: int) -> int:
    """Offset of the first real marker after entropy-coded data (FF 00 is a stuffed byte,
    FF D0-D7 a restart marker inside the scan)."""
    while True:
        pos = body.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(body):
            raise _truncated("JPEG", "inside the compressed image data")
        following = body[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            pos += 2
        elif following == 0xFF:
            pos += 1
        else:
            return pos


def _jpeg_header(body: bytes) -> ImageHeader:
    size = None
    for marker, start, length in _jpeg_segments(body):
        if marker in JPEG_SOF_MARKERS and size is None:
            if length < 5:
                raise UndecodableImage("the JPEG is corrupt: its frame header is too short")
            height = int.from_bytes(body[start + 1:start + 3], "big")
            width = int.from_bytes(body[start + 3:start + 5], "big")
            size = (width, height)
        elif marker == JPEG_SOS and size is None:
            raise UndecodableImage("the JPEG is corrupt: image data comes before the frame header")
    if size is None:
        raise UndecodableImage("the JPEG has no frame header (SOF), so no image")
    return ImageHeader("jpeg", *size)


def _png_header(body: bytes) -> ImageHeader:
    """IHDR must come first; every chunk must be complete up to IEND."""
    pos, end, size = len(PNG_MAGIC), len(body), None
    while True:
        if pos + 8 > end:
            raise _truncated("PNG", "before the IEND chunk")
        length = int.from_bytes(body[pos:pos + 4], "big")
        kind = body[pos + 4:pos + 8]
        if size is None:
            if kind != b"IHDR" or length != 13:
                raise UndecodableImage("the PNG is corrupt: it does not start with an IHDR chunk")
        if pos + 12 + length > end:
            raise _truncated("PNG", f"inside the {kind.decode('latin-1')!r} chunk")
        if size is None:
            size = (int.from_bytes(body[pos + 8:pos + 12], "big"),
                    int.from_bytes(body[pos + 12:pos + 16], "big"))
        if kind == b"IEND":
            return ImageHeader("png", *size)
        pos += 12 + length
