"""Image decoding with limits: the one place where uploaded bytes become pixels.

Used by the API (``probe``: header-only checks before a job is accepted) and by every
worker (``decode``: full decode, EXIF orientation, mode conversion, reduced-size JPEG
decoding).  Every failure is a typed ``ImageError`` with a stable ``code`` and the HTTP
status the API answers with, so nothing here ever surfaces as a 500.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
"""Largest accepted upload (20 MiB): a 4K JPEG is 2-8 MB, a 4K PNG up to ~25 MB."""

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest accepted image (50 MP): 6x a 4K frame, far below a decompression bomb."""

SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF"})

# Orientations 5-8 swap width and height when the EXIF transpose is applied.
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION_TAG = 0x0112


class ImageError(ValueError):
    """An upload that cannot be used as an image; ``code`` and ``status`` are stable."""

    code = "bad_image"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EmptyImageError(ImageError):
    code = "empty_image"


class NotAnImageError(ImageError):
    code = "not_an_image"


class TruncatedImageError(ImageError):
    code = "truncated_image"


class ImageTooLargeError(ImageError):
    code = "image_too_large"
    status = 413


class PayloadTooLargeError(ImageError):
    code = "payload_too_large"
    status = 413


class UnsupportedFormatError(ImageError):
    code = "unsupported_format"
    status = 415


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: format and the upright (EXIF-applied) size."""

    format: str
    width: int
    height: int
    orientation: int


@dataclass(frozen=True)
class DecodedImage:
    """RGB pixels (H x W x 3, uint8) plus the original upright size.

    ``pixels`` may be smaller than ``width`` x ``height`` when a reduced-size decode was
    asked for; ``scale`` maps pixel coordinates back to original-image coordinates.
    """

    pixels: np.ndarray
    width: int
    height: int
    format: str = "RAW"

    @property
    def scale(self) -> float:
        return self.width / self.pixels.shape[1]

    @classmethod
    def from_array(cls, pixels: np.ndarray) -> DecodedImage:
        return cls(pixels=pixels, width=pixels.shape[1], height=pixels.shape[0])


def _open(data: bytes, limits: ImageLimits) -> Image.Image:
    if len(data) == 0:
        raise EmptyImageError("empty upload: the file has 0 bytes, not an image")
    if len(data) > limits.max_bytes:
        raise PayloadTooLargeError(
            f"upload too large: {len(data)} bytes > limit of {limits.max_bytes} bytes"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image too large: too many pixels ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise NotAnImageError("not an image: cannot identify image file") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise TruncatedImageError(f"corrupt image header: {exc}") from exc
    if image.format not in SUPPORTED_FORMATS:
        raise UnsupportedFormatError(
            f"unsupported image format {image.format!r}; "
            f"supported: {', '.join(sorted(SUPPORTED_FORMATS - {'MPO'}))}"
        )
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"image too large: too many pixels ({width}x{height} = {width * height} "
            f"> limit of {limits.max_pixels})"
        )
    if width < 1 or height < 1:
        raise NotAnImageError(f"not an image: invalid size {width}x{height}")
    return image


def _orientation(image: Image.Image, data: bytes) -> int:
    """The EXIF orientation (1..8), read from the header bytes only: never a pixel decoded.

    ``Image.getexif()`` is what Pillow's ``exif_transpose`` uses, but for a PNG without an
    ``eXIf`` chunk before the pixels it decodes the whole image first (to read the chunks
    after them): a 143 KB PNG of 7000x7000 pixels whose text merely contained ``eXIf``
    cost the API 612 ms and 147 MB.  So ``getexif`` is never called here: the EXIF block
    Pillow read at open is parsed directly, a PNG's ``eXIf`` chunk after the pixels is found
    by walking the chunk headers (``_png_exif_chunk``), and an XMP ``tiff:Orientation`` is
    read with the pattern Pillow's ``getexif`` uses."""
    try:
        exif = image.info.get("exif")
        if not exif and image.format == "PNG" and b"eXIf" in data:
            exif = _png_exif_chunk(data)
        if exif:
            parsed = Image.Exif()
            parsed.load(exif)
            value = parsed.get(_EXIF_ORIENTATION_TAG)
            if value is not None:
                return _valid_orientation(value)
        xmp = image.info.get("XML:com.adobe.xmp") or image.info.get("xmp")
        if xmp:
            found = _XMP_ORIENTATION.search(_as_bytes(xmp))
            if found:
                return _valid_orientation(int(found[2]))
        return 1
    except Exception:  # noqa: BLE001 - a broken EXIF block must not fail the image
        return 1


_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(="|>)([0-9])')
"""Pillow's own pattern (``Image.getexif``)."""
_PNG_SIGNATURE_BYTES = 8
_PNG_MAX_CHUNKS = 10_000
"""Chunk headers walked looking for ``eXIf``: a 20 MiB PNG in libpng's 8 KiB IDAT chunks has
2,560; a file of empty chunks stops here (about 3 ms) with no orientation."""


def _png_exif_chunk(data: bytes) -> bytes | None:
    """The data of a PNG's ``eXIf`` chunk, wherever it sits, from the chunk headers alone
    (each header gives the length to skip); ``None`` at ``IEND``, the end of the bytes or
    after ``_PNG_MAX_CHUNKS`` chunks."""
    position = _PNG_SIGNATURE_BYTES
    for _ in range(_PNG_MAX_CHUNKS):
        if position + 8 > len(data):
            return None
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind == b"eXIf":
            return data[position + 8:position + 8 + length]
        if kind == b"IEND":
            return None
        position += 12 + length  # length, type, data, CRC
    return None


def _valid_orientation(value: object) -> int:
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8", "replace") if isinstance(value, str) else value


_TAIL_WINDOW = 1024


def _check_complete(data: bytes, image_format: str) -> None:
    """Reject files cut short, from their last bytes only (no decode): a JPEG must end
    with its EOI marker, a PNG with its IEND chunk."""
    tail = data[-_TAIL_WINDOW:]
    if image_format in ("JPEG", "MPO") and b"\xff\xd9" not in tail:
        raise TruncatedImageError("truncated or corrupt image: the JPEG has no end marker")
    if image_format == "PNG" and b"IEND" not in tail:
        raise TruncatedImageError("truncated or corrupt image: the PNG has no IEND chunk")


def probe(data: bytes, limits: ImageLimits | None = None) -> ImageInfo:
    """Check size, format, pixel count and completeness without decoding (cheap; used by
    the API before a job is accepted)."""
    image = _open(data, limits or ImageLimits())
    _check_complete(data, image.format or "")
    orientation = _orientation(image, data)
    width, height = image.size
    if orientation in _SWAPPING_ORIENTATIONS:
        width, height = height, width
    return ImageInfo(format=image.format or "?", width=width, height=height,
                     orientation=orientation)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode to 8-bit RGB without clipping high bit depths to white."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        array = np.asarray(image)
        if mode.startswith("I;16") or array.max(initial=0) > 255:
            array = (array.astype(np.uint32) >> 8).astype(np.uint8)
        else:
            array = array.astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if mode == "F":
        array = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode != "RGB":
        return image.convert("RGB")
    return image


def decode(data: bytes, limits: ImageLimits | None = None,
           max_side: int | None = None) -> DecodedImage:
    """Decode to upright RGB.  With ``max_side``, JPEGs are decoded at a reduced size
    (Pillow's ``draft``: 1/2, 1/4 or 1/8 scale) whose longest side stays >= ``max_side``.

    Truncated files are rejected explicitly, whatever ``ImageFile.LOAD_TRUNCATED_IMAGES``
    says (``import face_recognition`` sets it to True for the whole process).
    """
    image = _open(data, limits or ImageLimits())
    info_format = image.format or "?"
    orientation = _orientation(image, data)
    stored_w, stored_h = image.size
    if orientation in _SWAPPING_ORIENTATIONS:
        upright_w, upright_h = stored_h, stored_w
    else:
        upright_w, upright_h = stored_w, stored_h
    if max_side and image.format in ("JPEG", "MPO") and max(stored_w, stored_h) > max_side:
        ratio = max_side / max(stored_w, stored_h)
        image.draft("RGB", (math.ceil(stored_w * ratio), math.ceil(stored_h * ratio)))
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        image.load()
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image too large: too many pixels ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise TruncatedImageError(f"truncated or corrupt image: {exc}") from exc
    if orientation != 1:
        with contextlib.suppress(Exception):  # unusable EXIF: keep the stored orientation
            image = ImageOps.exif_transpose(image) or image
    rgb = _to_rgb(image)
    pixels = np.asarray(rgb, dtype=np.uint8)
    if not pixels.flags["C_CONTIGUOUS"]:
        pixels = np.ascontiguousarray(pixels)
    return DecodedImage(pixels=pixels, width=upright_w, height=upright_h, format=info_format)
