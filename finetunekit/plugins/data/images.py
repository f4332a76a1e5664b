"""Decoding one image file into uint8 RGB pixels at the model's input size.

Every odd file of a real photo folder ends here: grayscale, palette, CMYK and 16-bit
images become 8-bit RGB, transparency is composited onto white, the EXIF orientation is
applied. A file that cannot be used raises :class:`SkippedImage` with a reason from
:data:`REASONS`; :mod:`.scan` counts those and decides whether to skip or refuse.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from finetunekit.core.errors import DataError, printable

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
"""File name endings the ``folder`` source treats as images (any case)."""

REASONS = {
    "missing_file": "missing file",
    "broken_link": "broken symbolic link",
    "not_a_file": "not a file (a folder)",
    "unreadable": "unreadable file",
    "empty_file": "empty file",
    "not_an_image": "not an image",
    "corrupt": "corrupt image",
    "truncated": "truncated image",
    "too_large": "too large (decompression bomb)",
    "unsupported": "unsupported pixel format",
    "unknown_label": "unknown label",
    "bad_row": "bad CSV row",
}
"""Why a file or row was skipped: report key -> words for messages."""

BACKGROUND = (255, 255, 255)
"""Transparent pixels are composited onto white: what an image viewer shows, whatever
colour the editor happened to store under alpha = 0."""

_SIGNATURES = (b"\xff\xd8", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")
_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
              6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}


class SkippedImage(Exception):
    """A file that cannot be used; ``reason`` is a key of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{REASONS[reason]}{': ' + detail if detail else ''}")
        self.reason = reason


# -------------------------------------------------------------------------
# one image
# -------------------------------------------------------------------------


def _looks_like_image(data: bytes) -> bool:
    return data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _orientation(image) -> int:
    if "exif" not in image.info and image.format != "TIFF":  # the common case: no parsing
        return 1
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block is no reason to lose the pixels
        return 1


def _sixteen_to_eight(image) -> np.ndarray:
    # Pillow's own convert() clips 16-bit values at 255, turning most of the image white;
    # scale instead: round(v * 255 / 65535) == round(v / 257).
    values = np.clip(np.asarray(image), 0, 65535).astype(np.uint32)
    return ((values + 128) // 257).astype(np.uint8)


def _to_rgb(image):
    """Return ``(rgb_image, conversion)``; conversion is None for RGB already."""
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return image, None
    if mode.startswith("I;16") or mode == "I":
        return Image.fromarray(_sixteen_to_eight(image), "L").convert("RGB"), "16bit"
    if mode == "CMYK":
        return image.convert("RGB"), "cmyk"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, BACKGROUND)
        rgb.paste(rgba, mask=rgba)
        return rgb, "alpha"
    if mode in ("L", "1"):
        return image.convert("RGB"), "grayscale"
    if mode == "P":
        return image.convert("RGB"), "palette"
    try:
        return image.convert("RGB"), "other"
    except ValueError as exc:  # a mode Pillow cannot turn into RGB (e.g. LAB)
        raise SkippedImage("unsupported", mode) from exc


def decode_image(data: bytes, size: tuple[int, int]) -> tuple[np.ndarray, str | None]:
    """Decode an image file's bytes to a ``(height, width, 3)`` uint8 array at `size`.

    Grayscale, palette, CMYK and 16-bit images become RGB (16-bit scaled, not clipped);
    transparent pixels are composited onto :data:`BACKGROUND`; the EXIF orientation is
    applied; the image is resized (stretched) to `size` with bilinear filtering.

    Args:
        data: bytes. The file's contents.
        size: (height, width).

    Returns:
        ``(array, conversion)``: conversion names what was converted (``"grayscale"``,
        ``"alpha"``, ``"16bit"``, ``"cmyk"``, ``"palette"``, ``"other"``) or is None.

    Raises:
        SkippedImage: the bytes are not a usable image; ``reason`` says why.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise SkippedImage("empty_file")
    height, width = size
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise SkippedImage("too_large", str(exc)) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if "truncated" in str(exc).lower():  # cut off inside the header
            raise SkippedImage("truncated", str(exc)) from exc
        raise SkippedImage("corrupt" if _looks_like_image(data) else "not_an_image") from exc
    with image:
        try:
            if image.format == "JPEG":
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still covers the
                # target: most of the decode time of a large photo, saved.
                image.draft(None, (max(size), max(size)))
            image.load()
            orientation = _orientation(image)
            rgb, conversion = _to_rgb(image)
            turned = orientation in (5, 6, 7, 8)
            target = (height, width) if turned else (width, height)  # Pillow sizes are (w, h)
            if rgb.size != target:
                rgb = rgb.resize(target, Image.BILINEAR)
            if orientation in _TRANSPOSE:  # after resizing: cheaper on the small image
                rgb = rgb.transpose(getattr(Image.Transpose, _TRANSPOSE[orientation]))
            return np.asarray(rgb, dtype=np.uint8), conversion
        except SkippedImage:
            raise
        except Image.DecompressionBombError as exc:
            raise SkippedImage("too_large", str(exc)) from exc
        except OSError as exc:
            raise SkippedImage("truncated" if "truncated" in str(exc).lower() else "corrupt",
                               str(exc)) from exc
        except Exception as exc:  # Pillow's decoders raise many types on bad data
            raise SkippedImage("corrupt", f"{type(exc).__name__}: {exc}") from exc


def read_file(path: Path) -> bytes:
    """Read a file's bytes; a missing or unreadable file, a dangling symbolic link or a
    folder raises :class:`SkippedImage`."""
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise SkippedImage("broken_link" if path.is_symlink() else "missing_file") from exc
    except IsADirectoryError as exc:
        raise SkippedImage("not_a_file") from exc
    except OSError as exc:  # permission denied, a directory, an I/O error
        raise SkippedImage("unreadable", f"{type(exc).__name__}: {exc}") from exc


def read_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """Decode one image file to a ``(height, width, 3)`` uint8 array at `size`.

    Raises:
        DataError: the file is missing or not a usable image; the message says why.
    """
    try:
        return decode_image(read_file(Path(path)), size)[0]
    except SkippedImage as exc:
        raise DataError(f"Could not load '{printable(path)}': {exc}.") from exc


def list_images(folder: Path) -> tuple[list[Path], int]:
    """Image files under `folder` (recursively, sorted, hidden ones left out), and the
    number of other files there.

    A name with an image suffix that is not a readable file (a dangling symbolic link, a
    folder named ``x.jpg``) is listed too, so the scan reports it as skipped (or refuses
    it with ``strict``) instead of dropping it silently.
    """
    images, others = [], 0
    for path in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if not path.is_file():
            if path.suffix.lower() in IMAGE_SUFFIXES and (path.is_dir() or not path.exists()):
                images.append(path)  # a folder or a dangling link: reported by the scan
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES:
            images.append(path)
        else:
            others += 1
    return images, others
