"""data/images.py, the one image module of training and serving: the format comes from the
bytes, the size from the header, truncated or oversized images are refused with the reason
before decoding, and pixels are kept only when the decoder reports it decoded all of them."""

import io
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
import simplejpeg
from PIL import Image

import image_corpus
from ssd_sagemaker.data import images
from ssd_sagemaker.data.images import (
    BadImage,
    ImageHeader,
    TooManyPixels,
    UnsupportedFormat,
    decode,
    inspect_bytes,
    sniff_format,
)

LIMIT = 40_000_000


def _encode(image: np.ndarray, suffix: str = ".jpg", params=()) -> bytes:
    return cv2.imencode(suffix, image, list(params))[1].tobytes()


def _pillow(mode: str, image_format: str, **options) -> bytes:
    rgb = image_corpus.pattern(37, 23)
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert(mode).save(buffer, image_format, **options)
    return buffer.getvalue()


def _png_bomb(width: int, height: int) -> bytes:
    """A tiny, complete PNG whose header declares width x height pixels."""
    chunk = image_corpus.png_chunk
    return (image_corpus.PNG_SIGNATURE
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _with_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its frame header (SOF0) declaring another size."""
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[:sof + 5] + struct.pack(">HH", height, width) + jpeg[sof + 9:]


@pytest.mark.parametrize("suffix,params,expected", [
    (".jpg", (), "JPEG"),
    (".jpg", (cv2.IMWRITE_JPEG_QUALITY, 50, cv2.IMWRITE_JPEG_PROGRESSIVE, 1), "JPEG"),
    (".jpg", (cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_RST_INTERVAL, 3), "JPEG"),
    (".png", (), "PNG"),
    (".png", (cv2.IMWRITE_PNG_COMPRESSION, 9), "PNG"),
])
def test_complete_images_decode_to_the_pixels_opencv_reads(suffix, params, expected):
    pixels = image_corpus.pattern(321, 123)
    body = _encode(pixels, suffix, params)
    assert inspect_bytes(body) == ImageHeader(expected, 321, 123)
    decoded = decode(body)
    reference = cv2.cvtColor(cv2.imdecode(np.frombuffer(body, np.uint8), 1), cv2.COLOR_BGR2RGB)
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, reference)
    if suffix == ".png":  # lossless: the very pixels encoded
        assert np.array_equal(decoded, pixels[:, :, ::-1])


@pytest.mark.parametrize("body", [
    _pillow("L", "JPEG"), _pillow("CMYK", "JPEG"), _pillow("L", "PNG"), _pillow("P", "PNG"),
    _pillow("RGBA", "PNG"), _pillow("LA", "PNG"), _pillow("I;16", "PNG"),
    _encode(image_corpus.pattern(37, 23).astype(np.uint16) * 257, ".png"),
], ids=["gray jpeg", "cmyk jpeg", "gray png", "palette png", "rgba png", "gray-alpha png",
        "16-bit gray png", "16-bit rgb png"])
def test_every_colour_layout_decodes_to_rgb(body):
    assert decode(body).shape == (23, 37, 3)


def test_exif_orientation_is_not_applied_so_pixels_match_the_header_size():
    image = Image.fromarray(image_corpus.pattern(40, 20))
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees to display"
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    assert inspect_bytes(buffer.getvalue()) == ImageHeader("JPEG", 40, 20)
    assert decode(buffer.getvalue()).shape == (20, 40, 3)


def test_bytes_after_the_end_of_a_jpeg_are_ignored():
    body = image_corpus.jpeg(64, 48) + b"trailing data, e.g. a motion photo's video" * 200
    assert inspect_bytes(body) == ImageHeader("JPEG", 64, 48)
    assert decode(body).shape == (48, 64, 3)


@pytest.mark.parametrize("fault", sorted({**image_corpus.HEADER_FAULTS,
                                          **image_corpus.DATA_FAULTS}))
def test_every_broken_image_is_refused_never_partly_decoded(fault):
    """Issue 12 items 1 and 2: corrupt headers, corrupt compressed data, and libjpeg's
    "Corrupt JPEG data" warnings (after which it fills grey) are all refused."""
    body = image_corpus.broken_images(96, 64)[fault]
    with pytest.raises(BadImage) as error:
        decode(body)
    assert not isinstance(error.value, (UnsupportedFormat, TooManyPixels))
    assert str(error.value).startswith(("is a corrupt JPEG", "is a corrupt PNG")), error.value


@pytest.mark.parametrize("fault,message", [
    ("png colour type 7", "is a corrupt PNG: its header declares colour type 7 (valid: 0, 2, 3, "
                          "4, 6)"),
    ("png bit depth 3", "is a corrupt PNG: its header declares bit depth 3 for colour type 2 "
                        "(valid: 8, 16)"),
    ("png interlace 2", "is a corrupt PNG: its header declares compression 0, filter method 0, "
                        "interlace 2"),
    ("png unknown critical chunk", "is a corrupt PNG: it has a chunk 'QQQQ' that a decoder must"),
    ("png IDAT bad CRC", "is a corrupt PNG: its image data cannot be decoded (a checksum, "),
    ("jpeg precision 12", "is a corrupt JPEG: its image data cannot be decoded (libjpeg-turbo: "
                          "Unsupported JPEG data precision 12)"),
    ("jpeg without DQT", "(libjpeg-turbo: Quantization table 0x00 was not defined)"),
    ("jpeg scan ended early", "(libjpeg-turbo: Corrupt JPEG data: premature end of data segment)"),
])
def test_refusals_name_what_is_wrong(fault, message):
    with pytest.raises(BadImage) as error:
        decode(image_corpus.broken_images(96, 64)[fault])
    assert message in str(error.value)


@pytest.mark.parametrize("body,name", [
    (b"GIF89a\x01\x00\x01\x00" + bytes(20), "GIF"),
    (_pillow("RGB", "BMP"), "BMP"),
    (_pillow("RGB", "TIFF"), "TIFF"),
    (_pillow("RGB", "WEBP"), "WEBP"),
    (_pillow("RGB", "ICO"), "ICO"),
    (_pillow("RGB", "PPM"), "PPM"),
    (_pillow("RGB", "TGA"), "TGA"),
    (_pillow("RGB", "JPEG2000"), "JPEG 2000"),
    (b"\xff\x4f\xff\x51\x00\x2f" + bytes(40), "JPEG 2000"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC"),
    (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "AVIF"),
    (b"\xef\xbb\xbf<?xml version='1.0'?>\n<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF"),
])
def test_other_formats_are_named_as_unsupported(body, name):
    """Issue 12 item 5: one rule for every format recognised by its bytes."""
    with pytest.raises(UnsupportedFormat, match=f"is a {name} file, not a JPEG or PNG"):
        sniff_format(body)


def test_unrecognisable_bytes_are_undecodable_not_another_format():
    with pytest.raises(BadImage, match="neither JPEG nor PNG data .8 bytes starting with "
                                       "neither signature") as error:
        sniff_format(b'{"a": 1}')
    assert not isinstance(error.value, UnsupportedFormat)
    assert "7b 22" not in str(error.value) and '{"a"' not in str(error.value)
    with pytest.raises(BadImage, match="is empty"):
        sniff_format(b"")


@pytest.mark.parametrize("suffix,params", [(".jpg", ()), (".jpg", (2, 1)), (".png", ())])
@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.99])
def test_truncated_images_are_refused_as_truncated(suffix, params, fraction):
    body = _encode(image_corpus.pattern(200, 150), suffix, params)
    cut = body[:int(len(body) * fraction)]
    with pytest.raises(BadImage, match="is truncated: the (JPEG|PNG) data ends"):
        inspect_bytes(cut)
    with pytest.raises(BadImage, match="is truncated"):
        decode(cut)


@pytest.mark.parametrize("make", [lambda: _png_bomb(30000, 30000),
                                  lambda: _with_jpeg_size(image_corpus.jpeg(64, 48), 30000,
                                                          30000)])
def test_a_decompression_bomb_is_refused_without_decoding(make, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(simplejpeg, "decode_jpeg", refuse)
    monkeypatch.setattr(images.cv2, "imdecode", refuse)
    with pytest.raises(TooManyPixels, match="is 30000 x 30000 = 900000000 pixels, over the "
                                            "limit of 40000000"):
        decode(make(), max_pixels=LIMIT)


def test_the_pixel_limit_is_inclusive():
    body = image_corpus.png(100, 50)
    assert inspect_bytes(body, 5000).pixels == 5000
    with pytest.raises(TooManyPixels, match="100 x 50 = 5000 pixels"):
        inspect_bytes(body, 4999)


def test_the_module_imports_no_mxnet():
    """Loader worker processes decode with it and must not pay for (or fork) MXNet."""
    code = ("import sys, ssd_sagemaker.data.images as m; "
            "m.decode(open(sys.argv[1], 'rb').read()); print(sorted(k for k in sys.modules "
            "if k.split('.')[0] in ('mxnet', 'gluoncv')))")
    sample = image_corpus.jpeg(32, 32)
    result = subprocess.run([sys.executable, "-c", code, "/dev/stdin"], input=sample,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == b"[]"
