"""image_checks.py + decode_image: the format comes from the bytes, the size from the header,
truncated or oversized images are refused with the reason, and a bomb is never decoded."""

import struct
import zlib

import mxnet as mx
import pytest

from serving_samples import encode, noise
from ssd_sagemaker.serving.handlers import decode_image
from ssd_sagemaker.serving.image_checks import ImageHeader, check_image, sniff_format
from ssd_sagemaker.serving.request_errors import (PayloadTooLarge, UndecodableImage,
                                                  UnsupportedMediaType)

LIMIT = 40_000_000


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bomb(width: int, height: int) -> bytes:
    """A tiny, complete PNG whose header declares width x height pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def _with_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its frame header (SOF0) declaring another size."""
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[:sof + 5] + struct.pack(">HH", height, width) + jpeg[sof + 9:]


@pytest.mark.parametrize("suffix,params,expected", [
    (".jpg", (), "jpeg"),
    (".jpg", (1, 50, 2, 1), "jpeg"),  # quality 50, progressive
    (".jpg", (1, 90, 4, 3), "jpeg"),  # restart markers every 3 MCU rows
    (".png", (), "png"),
])
def test_complete_images_report_format_and_size(suffix, params, expected):
    body = encode(noise(321, 123), suffix, params)
    assert check_image(body, LIMIT) == ImageHeader(expected, 321, 123)
    assert decode_image(body).shape == (123, 321, 3)


def test_bytes_after_the_end_of_a_jpeg_are_ignored():
    body = encode(noise(64, 48)) + b"trailing data, e.g. a motion photo's video"
    assert check_image(body, LIMIT) == ImageHeader("jpeg", 64, 48)


def test_format_is_sniffed_from_the_bytes():
    assert sniff_format(encode(noise(8, 8), ".png")) == "png"
    assert sniff_format(encode(noise(8, 8), ".jpg")) == "jpeg"
    with pytest.raises(UnsupportedMediaType, match="GIF"):
        sniff_format(b"GIF89a\x01\x00\x01\x00")
    with pytest.raises(UndecodableImage, match="7b 22 61 22"):
        sniff_format(b'{"a": 1}')
    with pytest.raises(UndecodableImage, match="empty"):
        sniff_format(b"")


@pytest.mark.parametrize("suffix,params", [(".jpg", ()), (".jpg", (2, 1)), (".png", ())])
@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.99])
def test_truncated_images_are_refused_as_truncated(suffix, params, fraction):
    body = encode(noise(200, 150), suffix, params)
    cut = body[:int(len(body) * fraction)]
    with pytest.raises(UndecodableImage, match="truncated"):
        check_image(cut, LIMIT)
    with pytest.raises(UndecodableImage, match="truncated"):
        decode_image(cut)


def test_corrupt_jpeg_data_is_refused_by_the_decoder():
    body = bytearray(encode(noise(64, 48)))
    sos = body.index(b"\xff\xda")
    body[sos - 200:sos] = b"\x00" * 200  # wipe the Huffman tables before the scan
    with pytest.raises(UndecodableImage):
        decode_image(bytes(body))


@pytest.mark.parametrize("make", [lambda: _png_bomb(30000, 30000),
                                  lambda: _with_jpeg_size(encode(noise(64, 48)), 30000, 30000)])
def test_a_decompression_bomb_is_refused_without_decoding(make, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(mx.image, "imdecode", refuse)
    with pytest.raises(PayloadTooLarge) as error:
        decode_image(make(), max_pixels=LIMIT)
    assert "30000 x 30000" in str(error.value) and "SSD_MAX_IMAGE_PIXELS" in str(error.value)


def test_the_pixel_limit_is_inclusive():
    body = encode(noise(100, 50), ".png")
    assert check_image(body, 5000).pixels == 5000
    with pytest.raises(PayloadTooLarge, match="100 x 50 = 5000 pixels"):
        check_image(body, 4999)
