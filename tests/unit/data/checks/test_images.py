"""data/checks/images.py, the one image module of training and serving: the format comes from the
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
from progressive_jpeg import progressive_jpeg
from ssd_sagemaker.data.checks import images
from ssd_sagemaker.data.checks.images import (
    BadImage,
    ImageHeader,
    TooManyPixels,
    UnsupportedFormat,
    decode,
    inspect_bytes,
    peek_size,
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


def test_a_jpeg_of_more_scans_than_the_limit_is_refused_without_decoding(monkeypatch):
    """Measured here (2 shared cores): this 2000 x 2000 file of 2,090 valid scans (57 kB)
    decodes in 3.6 s, the same size with 10 scans in 0.15 s, with 100 scans in 0.33 s; the walk
    refuses it in 0.007 s."""
    hostile = progressive_jpeg(2000, 2000, 2090)
    assert simplejpeg.decode_jpeg(progressive_jpeg(64, 48, 2090), strict=True).shape == (48, 64,
                                                                                          3)

    def refuse(*args, **kwargs):
        raise AssertionError("the hostile JPEG was decoded")

    monkeypatch.setattr(simplejpeg, "decode_jpeg", refuse)
    with pytest.raises(BadImage, match="is a progressive JPEG of 2090 scans, over the limit of "
                                       "100 .*re-encode it"):
        decode(hostile)


def test_the_scan_limit_is_inclusive():
    assert decode(progressive_jpeg(64, 48, 100)).shape == (48, 64, 3)
    with pytest.raises(BadImage, match="of 101 scans"):
        inspect_bytes(progressive_jpeg(64, 48, 101))


def test_a_jpeg_of_more_segments_than_any_encoder_writes_is_refused():
    """1.5 million empty comments in 6 MB took the walk 1.3 s; refused after 10,000."""
    body = image_corpus.jpeg(16, 16)
    padded = body[:2] + b"\xff\xfe\x00\x02" * 10_000 + body[2:]
    with pytest.raises(BadImage, match="more than 10000 segments"):
        inspect_bytes(padded)
    assert inspect_bytes(body[:2] + b"\xff\xfe\x00\x02" * 9_000 + body[2:]).width == 16


def test_the_pixel_limit_is_inclusive():
    body = image_corpus.png(100, 50)
    assert inspect_bytes(body, 5000).pixels == 5000
    with pytest.raises(TooManyPixels, match="100 x 50 = 5000 pixels"):
        inspect_bytes(body, 4999)


def test_the_module_imports_no_mxnet():
    """Loader worker processes decode with it and must not pay for (or fork) MXNet."""
    code = ("import sys, ssd_sagemaker.data.checks.images as m; "
            "m.decode(open(sys.argv[1], 'rb').read()); print(sorted(k for k in sys.modules "
            "if k.split('.')[0] in ('mxnet', 'gluoncv')))")
    sample = image_corpus.jpeg(32, 32)
    result = subprocess.run([sys.executable, "-c", code, "/dev/stdin"], input=sample,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == b"[]"


def test_the_scan_limit_reaches_validate_data_and_train_naming_the_file(tmp_path, monkeypatch,
                                                                         capsys):
    """Training's data checks walk the same segments: the hostile file is an invalid example
    named in validate-data's report, and train refuses the channel naming it (1 of 4 is over
    the 1 % it would leave out) before building a network."""
    from planting import annotation, jpeg, write_json_pair
    from ssd_sagemaker.cli import main

    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "inputdataconfig.json").write_text(
        '{"train": {"ContentType": "image/jpeg"}, "train_annotation": {"ContentType": '
        '"image/jpeg"}}')
    (config / "hyperparameters.json").write_text(
        '{"num_classes": "1", "num_training_samples": "4", "epochs": "1", '
        '"use_pretrained_model": "0", "mini_batch_size": "2"}')
    images, notes = tmp_path / "input/data/train", tmp_path / "input/data/train_annotation"
    for index in range(3):
        write_json_pair(images, notes, f"good{index}", jpeg(seed=index),
                        annotation(f"good{index}.jpg"))
    write_json_pair(images, notes, "hostile", progressive_jpeg(64, 48, 2090),
                    annotation("hostile.jpg"))
    expected = "image hostile.jpg is a progressive JPEG of 2090 scans, over the limit of 100"

    assert main(["validate-data"]) == 1
    report = capsys.readouterr().out
    assert any(" train_annotation/hostile.json: " in line and expected in line
               for line in report.splitlines()), report
    assert main(["train"]) == 1
    failure = (tmp_path / "output" / "failure").read_text()
    assert "hostile" in failure and "2090 scans" in failure, failure


def _png_from_rows(width: int, height: int, colour_type: int, bit_depth: int, interlace: int,
                   raw: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, interlace)
    return (image_corpus.PNG_SIGNATURE + image_corpus.png_chunk(b"IHDR", ihdr)
            + image_corpus.png_chunk(b"IDAT", raw) + image_corpus.png_chunk(b"IEND", b""))


def test_compressed_data_past_the_rows_is_refused_before_libpng_inflates_it(monkeypatch):
    """5 MB: the rows of 64 x 48 pixels, then 5 GB of zeros in the same zlib stream. libpng
    inflated all of it (cv2.imdecode: 29.6 s, then the image and a warning). Here: refused
    after inflating one step past the rows."""
    rgb = image_corpus.pattern(64, 48)
    rows = b"".join(b"\x00" + row.tobytes() for row in rgb)
    packer = zlib.compressobj(9)
    stream = packer.compress(rows) + packer.compress(bytes(64 << 20)) + packer.flush()
    bomb = _png_from_rows(64, 48, 2, 8, 0, stream)
    monkeypatch.setattr(images.cv2, "imdecode", lambda *a: pytest.fail("libpng got the bomb"))
    with pytest.raises(BadImage, match="its compressed data inflates to over 1057840 bytes, far "
                                       "more than the 9264 bytes of rows its 64 x 48 pixels "
                                       "need"):
        decode(bomb)


@pytest.mark.parametrize("width,height", [(1, 1), (3, 9), (9, 3), (37, 23)])
@pytest.mark.parametrize("colour_type,bit_depth", [(2, 8), (0, 1), (6, 16), (3, 4)])
def test_interlaced_and_packed_pngs_inflate_to_exactly_their_rows(width, height, colour_type,
                                                                   bit_depth):
    """The row arithmetic of every Adam7 pass: a stream of exactly the rows decodes, and with
    one byte more than the 1 MiB tolerated is refused."""
    bits = bit_depth * {0: 1, 2: 3, 3: 1, 6: 4}[colour_type]
    raw = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                           (1, 0, 2, 2), (0, 1, 1, 2)):
        columns, rows = len(range(x0, width, dx)), len(range(y0, height, dy))
        if columns and rows:
            raw += (b"\x00" + bytes((columns * bits + 7) // 8)) * rows
    palette = image_corpus.png_chunk(b"PLTE", bytes(range(48))) if colour_type == 3 else b""
    body = _png_from_rows(width, height, colour_type, bit_depth, 1, zlib.compress(raw))
    body = body[:33] + palette + body[33:]
    assert decode(body).shape == (height, width, 3)
    for extra in (images.PNG_EXTRA_INFLATED, images.PNG_EXTRA_INFLATED + 1):
        longer = _png_from_rows(width, height, colour_type, bit_depth, 1,
                                zlib.compress(raw + bytes(extra)))
        longer = longer[:33] + palette + longer[33:]
        if extra == images.PNG_EXTRA_INFLATED:  # tolerated, as libpng does
            assert decode(longer).shape == (height, width, 3)
            continue
        with pytest.raises(BadImage, match=f"inflates to over {len(raw) + (1 << 20)} bytes"):
            decode(longer)


def test_peek_size_reads_the_frame_header_from_a_prefix() -> None:
    jpeg_body = cv2.imencode(".jpg", np.zeros((30, 50, 3), np.uint8))[1].tobytes()
    png_body = cv2.imencode(".png", np.zeros((30, 50, 3), np.uint8))[1].tobytes()
    assert peek_size(jpeg_body[:400]) == peek_size(jpeg_body) == (50, 30)
    assert peek_size(png_body[:24]) == (50, 30)
    assert peek_size(jpeg_body[:20]) is None  # the prefix ends before the frame header
    assert peek_size(b"GIF89a" + jpeg_body) is None
