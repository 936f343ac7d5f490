"""Attack: a 7000x7000 black PNG (143 KB) whose text chunk contains ``eXIf`` made the API's
probe decode the whole image (612 ms, 147 MB) to look for an EXIF orientation; the same PNG
without the word took 8 ms.  The probe reads the orientation from the chunk headers and
never decodes a pixel.  The cost is measured as memory (the peak RSS a decode needs), not
time, so the test does not depend on the machine's load."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin

from visionq.imaging import decode, probe

SIDE = 7000
FULL_DECODE_MB = SIDE * SIDE * 3 / 1e6  # 147 MB of RGB pixels
MAX_PROBE_GROWTH_MB = 20.0


def chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))


def black_png(side: int, text: bytes | None = None) -> bytes:
    """A black RGB PNG built row by row (the test never holds its pixels either)."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + side * 3)  # filter byte + RGB
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    chunks = [chunk(b"IHDR", header)]
    if text is not None:
        chunks.append(chunk(b"tEXt", b"Comment\0" + text))
    return b"\x89PNG\r\n\x1a\n" + b"".join([*chunks, chunk(b"IDAT", idat),
                                            chunk(b"IEND", b"")])


MEASURE = """
import sys
from visionq.imaging import probe
def peak_kb():  # VmHWM: this process's own peak (ru_maxrss keeps the forking parent's)
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0])
plain, hostile = (open(path, "rb").read() for path in sys.argv[1:3])
probe(plain)  # imports, first-call allocations
before = peak_kb()
info = probe(hostile)
after = peak_kb()
print(info.width, info.height, (after - before) / 1000)
"""


def test_probe_of_a_huge_png_with_exif_text_decodes_nothing(tmp_path: Path) -> None:
    plain, hostile = tmp_path / "plain.png", tmp_path / "hostile.png"
    plain.write_bytes(black_png(SIDE))
    hostile.write_bytes(black_png(SIDE, b"eXIf"))
    assert hostile.stat().st_size < 200_000
    done = subprocess.run([sys.executable, "-c", MEASURE, str(plain), str(hostile)],
                          capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2], check=True)
    width, height, growth_mb = done.stdout.split()
    assert (int(width), int(height)) == (SIDE, SIDE)
    assert float(growth_mb) < MAX_PROBE_GROWTH_MB, (
        f"the probe's peak RSS grew by {float(growth_mb):.0f} MB (a full decode is "
        f"{FULL_DECODE_MB:.0f} MB)")


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    position, found = 8, []
    while position < len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        found.append((kind, data[position:position + 12 + length]))
        position += 12 + length
    return found


def test_exif_chunk_after_the_pixels_still_rotates() -> None:
    """An ``eXIf`` chunk after IDAT (allowed by the PNG extensions) is still honoured by
    the probe and the decode, as Pillow's ``exif_transpose`` reads it after a full load."""
    pixels = np.zeros((30, 40, 3), np.uint8)
    pixels[:5, :, 0] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    saved = io.BytesIO()
    Image.fromarray(pixels).save(saved, "PNG", exif=exif)
    chunks = _chunks(saved.getvalue())
    exif_chunk = next(raw for kind, raw in chunks if kind == b"eXIf")
    others = [raw for kind, raw in chunks if kind != b"eXIf"]
    data = saved.getvalue()[:8] + b"".join([*others[:-1], exif_chunk, others[-1]])
    assert [kind for kind, _ in _chunks(data)] == [b"IHDR", b"IDAT", b"eXIf", b"IEND"]

    info = probe(data)
    assert (info.width, info.height, info.orientation) == (30, 40, 6)
    decoded = decode(data)
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    assert np.array_equal(decoded.pixels, np.asarray(reference))


def test_xmp_orientation_is_read_without_getexif() -> None:
    xmp = PngImagePlugin.PngInfo()
    xmp.add_itxt("XML:com.adobe.xmp", '<rdf:Description tiff:Orientation="8"/>')
    saved = io.BytesIO()
    Image.new("RGB", (40, 30)).save(saved, "PNG", pnginfo=xmp)
    info = probe(saved.getvalue())
    assert (info.width, info.height, info.orientation) == (30, 40, 8)
