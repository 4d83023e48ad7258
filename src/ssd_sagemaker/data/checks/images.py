"""What a usable image is, for training and serving alike: a complete JPEG or PNG within a pixel
limit that a decoder reports it decoded in full. `inspect_bytes` reads the format from the magic
bytes, the size from the frame header (JPEG SOF, PNG IHDR) and walks the segments or chunks to
the end marker, so a bomb, a truncated file or another format is refused by name without
decoding a pixel; `decode` then keeps the pixels only if the decoder reports success.

Decoders that do not report failure are not used: libjpeg fills what it cannot decode with grey
after a "Corrupt JPEG data" warning (OpenCV, Pillow and MXNet ignore the warning), and
`mx.image.imdecode` hands back an uninitialised buffer (another request's pixels) when OpenCV
gives up on a header. JPEGs are decoded by libjpeg-turbo through `simplejpeg` with warnings as
errors, PNGs by OpenCV's libpng, which stops on every checksum, zlib, filter or row-count error.
EXIF orientation is not applied: pixels come in stored order, the order the header's width and
height (and so the annotations' `image_size`) describe.

Imports no MXNet: loader worker processes decode here.
"""

from __future__ import annotations

import io
import re
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import simplejpeg

# Training's limit: far above any photo or aerial tile SSD is trained on (images are resized to
# 300 or 512 px), far below the gigapixels of a decompression bomb; decoding 100 MP takes 300 MB.
# Serving passes its own (SSD_MAX_IMAGE_PIXELS), a per-request memory bound.
MAX_PIXELS = 100_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers (baseline, progressive, lossless, arithmetic); not DHT/JPG/DAC.
JPEG_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                              0xCE, 0xCF})
JPEG_SOS, JPEG_EOI = 0xDA, 0xD9
# Decode work in proportion to pixels. libjpeg-turbo visits every block of a component in every
# scan, so a progressive JPEG costs scans x pixels while its scans can be a few bytes each: 2,090
# scans held a worker 45 s at 6000 x 6000 (3.6 s at 2000 x 2000, from 57 kB; 10 scans: 0.15 s).
# Encoders write far fewer: libjpeg's progressive default 10 (YCbCr), 6 per component otherwise
# (24 for CMYK, 60 at its 10-component maximum), mozjpeg's searched scripts about as many; 100
# scans decode at most ~2-3x the time of a default progressive image of the same size.
MAX_JPEG_SCANS = 100
# Segments outside the scans (APPn, COM, DQT, DHT, SOS, ...): a camera file has tens, a
# progressive one a DHT and SOS per scan; 1.5 million empty COM segments in a 6 MB body took the
# segment walk 1.3 s (libjpeg-turbo skips them in 0.03 s).
MAX_JPEG_SEGMENTS = 10_000
JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length field
# The end of entropy-coded data: an FF that is not a stuffed 00, a restart marker or fill.
JPEG_MARKER_IN_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
TURBOJPEG_FUNCTION = re.compile(r"^tj\w+\(\): ")  # "tjDecompressHeader3(): " before a reason
# Other formats, named so that a refusal says what the bytes are (Pillow names most others).
SIGNATURES = ((b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
              (b"%PDF-", "PDF"), (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
              (b"\xff\x4f\xff\x51", "JPEG 2000"), (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
              (b"\xff\x0a", "JPEG XL"), (b"8BPS", "PSD"), (b"qoif", "QOI"))
# PNG colour types and the bit depths each allows; chunks every decoder must understand.
PNG_BIT_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
PNG_CRITICAL_CHUNKS = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND"})
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # per colour type
# Adam7's passes: (first column, first row, column step, row step).
PNG_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
             (0, 1, 1, 2))
PNG_INFLATE_STEP = 1 << 20
# Inflated bytes past the rows that are tolerated (libpng ignores them): a sloppy encoder's
# padding, never a cost worth refusing.
PNG_EXTRA_INFLATED = 1 << 20
ISO_BRANDS = {b"avif": "AVIF", b"avis": "AVIF", b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC",
              b"heim": "HEIC", b"heis": "HEIC", b"hevx": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF"}


class BadImage(ValueError):
    """The bytes are not a usable image. The message is a predicate ("is truncated: ...");
    callers put the image's name in front."""


class UnsupportedFormat(BadImage):
    """The bytes are recognisably another format (named in the message), not JPEG or PNG."""


class TooManyPixels(BadImage):
    """The header declares more pixels than the limit: refused before decoding."""


@dataclass(frozen=True)
class ImageHeader:
    """What the encoded bytes declare, known before decoding."""

    format: str  # "JPEG" | "PNG"
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def inspect_bytes(data: bytes, max_pixels: int = MAX_PIXELS) -> ImageHeader:
    """Format and size of a complete JPEG or PNG of at most `max_pixels`, else BadImage saying
    why not (empty, another format, truncated, corrupt structure, too many pixels)."""
    image_format = sniff_format(data)
    header = _jpeg_header(data) if image_format == "JPEG" else _png_header(data)
    if header.width <= 0 or header.height <= 0:
        raise BadImage(f"is a corrupt {image_format}: its header declares an empty image "
                       f"({header.width} x {header.height})")
    if header.pixels > max_pixels:
        raise TooManyPixels(f"is {header.width} x {header.height} = {header.pixels} pixels, over "
                            f"the limit of {max_pixels} (a decompression bomb?); resize it")
    return header


def peek_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the frame header at the start of a JPEG or PNG declares it, read
    from `data` (a prefix will do) without walking the rest: what training must know before
    its first batch (boxes are checked against it), while `decode` checks the whole image when
    a loader worker uses it. None when `data` does not reach a usable frame header or is not
    plainly a JPEG or PNG (`inspect_bytes` of the whole image then says why)."""
    if data.startswith(PNG_MAGIC):
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        size = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return size if min(size) > 0 else None
    if not data.startswith(JPEG_MAGIC):
        return None
    try:
        for marker, start, length in _jpeg_segments(data):
            if marker == JPEG_SOS or (marker in JPEG_SOF_MARKERS and length < 6):
                return None
            if marker in JPEG_SOF_MARKERS:
                size = (int.from_bytes(data[start + 3:start + 5], "big"),
                        int.from_bytes(data[start + 1:start + 3], "big"))
                return size if min(size) > 0 else None
    except BadImage:  # the prefix ends, or the structure is broken: inspect_bytes says which
        return None
    return None


def inspect_file(path: Path, max_pixels: int = MAX_PIXELS) -> ImageHeader:
    """As `inspect_bytes`, for a file (whole: completeness needs the segments up to the end)."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise BadImage(f"cannot be read ({error.strerror})") from None
    return inspect_bytes(data, max_pixels)


def decode(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """HWC RGB uint8 pixels of a JPEG or PNG that passes `inspect_bytes` and that the decoder
    decoded in full; BadImage otherwise (never partly decoded or uninitialised pixels)."""
    header = inspect_bytes(data, max_pixels)
    if header.format == "JPEG":
        try:
            image = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
        except ValueError as error:
            reason = TURBOJPEG_FUNCTION.sub("", str(error))
            raise BadImage(f"is a corrupt JPEG: its image data cannot be decoded "
                           f"(libjpeg-turbo: {reason})") from None
    else:
        _check_png_data_size(data, header)
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8),
                           cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if bgr is None:
            raise BadImage("is a corrupt PNG: its image data cannot be decoded (a checksum, "
                           "compressed data or row filter error, or too few rows)")
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if image.shape != (header.height, header.width, 3):
        raise BadImage(f"is a corrupt {header.format}: it decodes to {image.shape[1]} x "
                       f"{image.shape[0]} pixels, not the {header.width} x {header.height} "
                       f"its header declares")
    return image


def sniff_format(data: bytes) -> str:
    """"JPEG" or "PNG" from the magic bytes, whatever the file name or Content-Type says;
    UnsupportedFormat naming any other format recognised."""
    if not data:
        raise BadImage("is empty (0 bytes)")
    if data.startswith(JPEG_MAGIC):
        return "JPEG"
    if data.startswith(PNG_MAGIC):
        return "PNG"
    other = other_format(data)
    if other is not None:
        raise UnsupportedFormat(f"is a {other} file, not a JPEG or PNG; convert it to JPEG or "
                                f"PNG")
    raise BadImage(f"could not be decoded: it is neither JPEG nor PNG data ({len(data):,} "
                   f"bytes starting with neither signature, ff d8 ff or 89 50 4e 47)")


def other_format(data: bytes) -> str | None:
    """The name of the (non JPEG/PNG) format of `data`, if recognisable: the signature table,
    ISO media brands (HEIC/AVIF), SVG, then whatever Pillow can open the header of."""
    for magic, name in SIGNATURES:
        if data.startswith(magic):
            return name
    if data[4:8] == b"ftyp" and data[8:12] in ISO_BRANDS:
        return ISO_BRANDS[data[8:12]]
    text = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<") and b"<svg" in text:
        return "SVG"
    return _pillow_format(data)


def _pillow_format(data: bytes) -> str | None:
    from PIL import Image  # only on this rare path: Pillow's plugins load on first use

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                return str(image.format)
    except Exception:  # noqa: BLE001 - Pillow's plugins raise many types on foreign data
        return None


def _truncated(image_format: str, where: str) -> BadImage:
    return BadImage(f"is truncated: the {image_format} data ends {where} (an incomplete upload "
                    f"or copy?)")


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, payload offset, payload length) of each segment up to and including EOI;
    entropy-coded scan data after each SOS is skipped."""
    pos, end = 2, len(data)
    while True:
        if pos >= end:
            raise _truncated("JPEG", "before the end-of-image marker")
        if data[pos] != 0xFF:
            raise BadImage(f"is a corrupt JPEG: expected a marker at byte {pos}")
        while pos < end and data[pos] == 0xFF:  # fill bytes may pad markers
            pos += 1
        if pos >= end:
            raise _truncated("JPEG", "inside a marker")
        marker = data[pos]
        pos += 1
        if marker in JPEG_STANDALONE or marker == JPEG_EOI:
            yield marker, pos, 0
            if marker == JPEG_EOI:
                return
            continue
        if pos + 2 > end:
            raise _truncated("JPEG", f"inside the header of segment 0x{marker:02X}")
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2:
            raise BadImage(f"is a corrupt JPEG: segment 0x{marker:02X} at byte {pos} has "
                           f"length {length}")
        if pos + length > end:
            raise _truncated("JPEG", f"inside segment 0x{marker:02X}")
        yield marker, pos + 2, length - 2
        pos += length
        if marker == JPEG_SOS:
            found = JPEG_MARKER_IN_SCAN.search(data, pos)
            if found is None:
                raise _truncated("JPEG", "inside the compressed image data")
            pos = found.start()


def _jpeg_header(data: bytes) -> ImageHeader:
    """The frame size, once the walk to EOI found the structure whole and of bounded decode
    work (MAX_JPEG_SCANS, MAX_JPEG_SEGMENTS: read at call time, so a test can raise them)."""
    size, scans = None, 0
    for count, (marker, start, length) in enumerate(_jpeg_segments(data), 1):
        if count > MAX_JPEG_SEGMENTS:
            raise BadImage(f"is a JPEG of more than {MAX_JPEG_SEGMENTS} segments (markers "
                           f"outside the image data), which no encoder writes; re-encode it")
        scans += marker == JPEG_SOS
        if marker in JPEG_SOF_MARKERS and size is None:
            if length < 6:
                raise BadImage("is a corrupt JPEG: its frame header is too short")
            height = int.from_bytes(data[start + 1:start + 3], "big")
            width = int.from_bytes(data[start + 3:start + 5], "big")
            size = (width, height)
        elif marker == JPEG_SOS and size is None:
            raise BadImage("is a corrupt JPEG: image data comes before the frame header")
    if size is None:
        raise BadImage("is a corrupt JPEG: it has no frame header (SOF), so no image")
    if scans > MAX_JPEG_SCANS:
        raise BadImage(f"is a progressive JPEG of {scans} scans, over the limit of "
                       f"{MAX_JPEG_SCANS} (encoders write at most ~60, usually 10; each scan "
                       f"costs a pass over the whole image); re-encode it, progressive with the "
                       f"default scans or baseline")
    return ImageHeader("JPEG", *size)


def _png_header(data: bytes) -> ImageHeader:
    """IHDR must come first; every chunk must be complete up to IEND."""
    pos, end, size = len(PNG_MAGIC), len(data), None
    while True:
        if pos + 8 > end:
            raise _truncated("PNG", "before the IEND chunk")
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if size is None and (kind != b"IHDR" or length != 13):
            raise BadImage("is a corrupt PNG: it does not start with an IHDR chunk")
        if pos + 12 + length > end:
            raise _truncated("PNG", f"inside the {kind.decode('latin-1')!r} chunk")
        if size is None:
            size = (int.from_bytes(data[pos + 8:pos + 12], "big"),
                    int.from_bytes(data[pos + 12:pos + 16], "big"))
            _check_png_fields(*data[pos + 16:pos + 21])
        elif kind[0] & 0x20 == 0 and kind not in PNG_CRITICAL_CHUNKS:
            raise BadImage(f"is a corrupt PNG: it has a chunk '{kind.decode('latin-1')}' that "
                           f"a decoder must understand to read the image, and none does")
        if kind == b"IEND":
            return ImageHeader("PNG", *size)
        pos += 12 + length


def _png_row_bytes(width: int, height: int, bits_per_pixel: int, interlaced: bool) -> int:
    """The size of a PNG's filtered rows (a filter byte each), all Adam7 passes if interlaced."""
    passes = PNG_ADAM7 if interlaced else ((0, 0, 1, 1),)
    total = 0
    for x0, y0, dx, dy in passes:
        columns, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if columns > 0 and rows > 0:
            total += rows * (1 + -(-columns * bits_per_pixel // 8))
    return total


def _check_png_data_size(data: bytes, header: ImageHeader) -> None:
    """Refuse compressed data that inflates past the rows the header needs. libpng inflates
    all of it ("Too much image data", a warning OpenCV ignores): 5 GB of zeros after the rows
    of a 5 MB, 64 x 48 PNG held cv2.imdecode 30 s. Inflated here in steps, never kept, and
    stopped past PNG_EXTRA_INFLATED too many; a legitimate stream ends with its rows. Costs
    about half of OpenCV's decode (12 MP: 0.27 s of 0.44 s). IHDR is known valid."""
    bits = data[24] * PNG_CHANNELS[data[25]]
    needed = _png_row_bytes(header.width, header.height, bits, interlaced=data[28] == 1)
    inflater, inflated, pos = zlib.decompressobj(), 0, len(PNG_MAGIC)
    while pos + 8 <= len(data) and data[pos + 4:pos + 8] != b"IEND":
        length = int.from_bytes(data[pos:pos + 4], "big")
        pending = data[pos + 8:pos + 8 + length] if data[pos + 4:pos + 8] == b"IDAT" else b""
        pos += 12 + length
        while pending and not inflater.eof:
            try:
                inflated += len(inflater.decompress(pending, PNG_INFLATE_STEP))
            except zlib.error:
                return  # corrupt: OpenCV's libpng refuses it with its own reason
            pending = inflater.unconsumed_tail
            if inflated > needed + PNG_EXTRA_INFLATED:
                raise BadImage(f"is a corrupt PNG: its compressed data inflates to over "
                               f"{needed + PNG_EXTRA_INFLATED} bytes, far more than the {needed} "
                               f"bytes of rows its {header.width} x {header.height} pixels need "
                               f"(a decompression bomb?)")


def _check_png_fields(bit_depth: int, colour_type: int, compression: int, filter_method: int,
                      interlace: int) -> None:
    """IHDR's fields are from the PNG specification's short lists, else no decoder reads it."""
    if colour_type not in PNG_BIT_DEPTHS:
        raise BadImage(f"is a corrupt PNG: its header declares colour type {colour_type} "
                       f"(valid: 0, 2, 3, 4, 6)")
    if bit_depth not in PNG_BIT_DEPTHS[colour_type]:
        valid = ", ".join(map(str, PNG_BIT_DEPTHS[colour_type]))
        raise BadImage(f"is a corrupt PNG: its header declares bit depth {bit_depth} for colour "
                       f"type {colour_type} (valid: {valid})")
    if (compression, filter_method) != (0, 0) or interlace not in (0, 1):
        raise BadImage(f"is a corrupt PNG: its header declares compression {compression}, "
                       f"filter method {filter_method}, interlace {interlace} (valid: 0, 0, "
                       f"0 or 1)")
