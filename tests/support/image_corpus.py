"""Image bodies for the decoder tests: well-formed JPEGs and PNGs, and each way of breaking one
that issue 12 lists (a corrupt header that makes a decoder give up before writing a pixel;
corrupt compressed data; libjpeg's "corrupt data" warnings, after which it fills grey), plus
other file formats identified by their bytes.

Every broken variant is built from a well-formed image of a given size, so tests can check that
nothing of an earlier image (the same size: the same buffer size) shows through.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import cv2
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def pattern(width: int = 300, height: int = 300, seed: int = 0) -> np.ndarray:
    """HWC uint8 noise (BGR for OpenCV's encoder): every pixel different from another seed's."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def jpeg(width: int = 300, height: int = 300, seed: int = 0, params=()) -> bytes:
    return cv2.imencode(".jpg", pattern(width, height, seed), list(params))[1].tobytes()


def png(width: int = 300, height: int = 300, seed: int = 0, params=()) -> bytes:
    return cv2.imencode(".png", pattern(width, height, seed), list(params))[1].tobytes()


# ---- PNG surgery --------------------------------------------------------------------------

def png_chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc & 0xFFFFFFFF)


def png_chunks(body: bytes) -> list[tuple[bytes, bytes, int]]:
    """(kind, data, crc) of each chunk of a well-formed PNG."""
    chunks, pos = [], len(PNG_SIGNATURE)
    while pos < len(body):
        length, kind = struct.unpack(">I4s", body[pos:pos + 8])
        data = body[pos + 8:pos + 8 + length]
        crc = struct.unpack(">I", body[pos + 8 + length:pos + 12 + length])[0]
        chunks.append((kind, data, crc))
        pos += 12 + length
    return chunks


def png_join(chunks, keep_crc: bool = False) -> bytes:
    return PNG_SIGNATURE + b"".join(png_chunk(k, d, c if keep_crc else None) for k, d, c in chunks)


def _png_idat(body: bytes) -> bytes:
    return b"".join(data for kind, data, _ in png_chunks(body) if kind == b"IDAT")


def _png_with_idat(body: bytes, idat: bytes, crc: int | None = None) -> bytes:
    """`body` with all its IDAT chunks replaced by one holding `idat`."""
    chunks = png_chunks(body)
    first = next(i for i, (kind, _, _) in enumerate(chunks) if kind == b"IDAT")
    rest = [c for c in chunks if c[0] != b"IDAT"]
    head = PNG_SIGNATURE + b"".join(png_chunk(k, d) for k, d, _ in rest[:first])
    tail = b"".join(png_chunk(k, d) for k, d, _ in rest[first:])
    return head + png_chunk(b"IDAT", idat, crc) + tail


def _png_with_ihdr(body: bytes, **fields: int) -> bytes:
    """`body` with IHDR fields changed (and a correct CRC: only the value is wrong)."""
    names = ("width", "height", "bit_depth", "colour_type", "compression", "filter", "interlace")
    chunks = png_chunks(body)
    values = dict(zip(names, struct.unpack(">IIBBBBB", chunks[0][1])))
    values.update(fields)
    chunks[0] = (b"IHDR", struct.pack(">IIBBBBB", *(values[n] for n in names)), 0)
    return png_join(chunks)


def _png_raw_rows(body: bytes) -> bytes:
    return zlib.decompress(_png_idat(body))


def _png_ihdr_bad_crc(body: bytes) -> bytes:
    chunks = png_chunks(body)
    kind, data, crc = chunks[0]
    chunks[0] = (kind, data, crc ^ 0x1)
    return png_join(chunks, keep_crc=True)


def _png_unknown_critical_chunk(body: bytes) -> bytes:
    chunks = png_chunks(body)
    chunks.insert(1, (b"QQQQ", b"unknown critical chunk", 0))
    return png_join(chunks)


def _png_idat_bit_flip(body: bytes, fix_crc: bool = True) -> bytes:
    idat = bytearray(_png_idat(body))
    idat[len(idat) // 2] ^= 0x10
    crc = None if fix_crc else zlib.crc32(b"IDAT" + _png_idat(body))
    return _png_with_idat(body, bytes(idat), crc)


def _png_bad_filter(body: bytes) -> bytes:
    rows = bytearray(_png_raw_rows(body))
    chunks = png_chunks(body)
    width, height = struct.unpack(">II", chunks[0][1][:8])
    stride = len(rows) // height
    rows[stride * (height // 2)] = 7  # filter types are 0-4
    return _png_with_idat(body, zlib.compress(bytes(rows)))


def _png_rows_short(body: bytes) -> bytes:
    rows = _png_raw_rows(body)
    return _png_with_idat(body, zlib.compress(rows[:len(rows) // 2]))


# ---- JPEG surgery -------------------------------------------------------------------------

def jpeg_segment(body: bytes, marker: int) -> int:
    """Offset of the first segment with `marker` (its 0xFF byte)."""
    pos = 2
    while True:
        if body[pos + 1] == marker:
            return pos
        pos += 2 + struct.unpack(">H", body[pos + 2:pos + 4])[0]


def _jpeg_sof_byte(body: bytes, index: int, value: int) -> bytes:
    """`body` with byte `index` of its frame header's payload (0 precision, 5 components)."""
    sof = jpeg_segment(body, 0xC0)
    out = bytearray(body)
    out[sof + 4 + index] = value
    return bytes(out)


def _jpeg_without(body: bytes, marker: int) -> bytes:
    while True:
        try:
            pos = jpeg_segment(body, marker)
        except (struct.error, IndexError):
            return body
        if body[pos + 1] == 0xDA:
            return body
        body = body[:pos] + body[pos + 2 + struct.unpack(">H", body[pos + 2:pos + 4])[0]:]


def _jpeg_scan(body: bytes) -> tuple[int, int]:
    """(first, end) offsets of the entropy-coded data (end: the EOI marker)."""
    sos = jpeg_segment(body, 0xDA)
    first = sos + 2 + struct.unpack(">H", body[sos + 2:sos + 4])[0]
    return first, body.rindex(b"\xff\xd9")


def _jpeg_scan_zeroed(body: bytes) -> bytes:
    """A run of the scan set to zero bytes: libjpeg warns and decodes garbage for the rest."""
    first, end = _jpeg_scan(body)
    middle = (first + end) // 2
    return body[:middle] + b"\x00" * 64 + body[middle + 64:]


def _jpeg_scan_ended_early(body: bytes) -> bytes:
    """The scan cut in half, then EOI: libjpeg warns "premature end of data segment" and fills
    the rest grey. The segment structure is complete, so only the decoder can tell."""
    first, end = _jpeg_scan(body)
    return body[:(first + end) // 2] + b"\xff\xd9"


def _jpeg_bad_marker_in_scan(body: bytes) -> bytes:
    """A stray marker (FF C8, JPG) in the middle of the scan: "corrupt data" warning."""
    first, end = _jpeg_scan(body)
    middle = (first + end) // 2
    return body[:middle] + b"\xff\xd3" + body[middle:]


HEADER_FAULTS: dict[str, Callable[[bytes], bytes]] = {
    # The decoders give up on these before writing a pixel (issue 12 item 1).
    "png IHDR CRC wrong": _png_ihdr_bad_crc,
    "png colour type 7": lambda b: _png_with_ihdr(b, colour_type=7),
    "png bit depth 3": lambda b: _png_with_ihdr(b, bit_depth=3),
    "png interlace 2": lambda b: _png_with_ihdr(b, interlace=2),
    "png unknown critical chunk": _png_unknown_critical_chunk,
    "jpeg precision 12": lambda b: _jpeg_sof_byte(b, 0, 12),
    "jpeg precision 16": lambda b: _jpeg_sof_byte(b, 0, 16),
    "jpeg 0 components": lambda b: _jpeg_sof_byte(b, 5, 0),
    "jpeg 2 components": lambda b: _jpeg_sof_byte(b, 5, 2),
    "jpeg 255 components": lambda b: _jpeg_sof_byte(b, 5, 255),
}

DATA_FAULTS: dict[str, Callable[[bytes], bytes]] = {
    # The header is fine, the compressed data is not (issue 12 item 2).
    "png IDAT bit flip (CRC fixed)": _png_idat_bit_flip,
    "png IDAT bit flip (CRC wrong)": lambda b: _png_idat_bit_flip(b, fix_crc=False),
    "png IDAT bad CRC": lambda b: _png_with_idat(b, _png_idat(b), crc=0),
    "png IDAT empty": lambda b: _png_with_idat(b, b""),
    "png IDAT not zlib": lambda b: _png_with_idat(b, bytes(range(256)) * 8),
    "png rows too short": _png_rows_short,
    "png bad filter type": _png_bad_filter,
    "jpeg without DQT": lambda b: _jpeg_without(b, 0xDB),
    # libjpeg decodes these with a "Corrupt JPEG data" warning, filling grey or garbage.
    "jpeg scan zeroed": _jpeg_scan_zeroed,
    "jpeg scan ended early": _jpeg_scan_ended_early,
    "jpeg stray restart marker": _jpeg_bad_marker_in_scan,
}


def broken_images(width: int = 300, height: int = 300, seed: int = 1) -> dict[str, bytes]:
    """Every fault above applied to a JPEG or PNG (by the fault's name) of this size."""
    bases = {"png": png(width, height, seed), "jpeg": jpeg(width, height, seed)}
    return {name: fault(bases[name.split()[0]])
            for name, fault in {**HEADER_FAULTS, **DATA_FAULTS}.items()}
