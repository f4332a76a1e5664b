"""Streaming image files: a split decoded on demand, batch by batch, never all at once.

:func:`probe` is the header pass (Pillow's ``Image.open`` reads a file's header, not its
pixels): before training, every file is checked there, with the scan's reasons and
report (:mod:`.scan`), and told which decoder will take it. :class:`FileExamples` is
then the split as an :class:`~finetunekit.core.examples.Examples`; the engine reads it
by index in the epoch's order (:mod:`finetunekit.core.feeding`).

Two decoders, one per backend, so a run's pixels never depend on what else it does
(label mixing, the feature cache, resuming):

* ``"tf"`` (the TensorFlow backend): TensorFlow's C++ decoders in a ``tf.data`` map,
  as ``keras.utils.image_dataset_from_directory`` decodes: ``decode_jpeg`` (at 1/2, 1/4
  or 1/8 scale in the DCT domain when that still covers the input, as Pillow's draft
  mode) or ``decode_png``, then ``tf.image.resize`` (bilinear, not antialiased, Keras's
  default). Files TensorFlow would decode differently from the in-memory path (EXIF
  rotation, transparency, CMYK, 16-bit, palette, GIF, BMP, WebP, TIFF) go to Pillow.
* ``"pillow"`` (JAX, or no TensorFlow): :func:`~.images.decode_image`, exactly the
  in-memory path's pixels.

A file that passed the header check but fails to decode is dropped from its batch and
counted in ``Data.report`` (``skipped``, under its reason) with a warning; with
``strict`` it is refused with a :class:`~finetunekit.DataError` naming it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from finetunekit.core.errors import DataError, printable
from finetunekit.core.examples import Examples
from finetunekit.plugins.data.images import (
    REASONS,
    SkippedImage,
    _looks_like_image,
    _orientation,
    decode_image,
    read_file,
)

logger = logging.getLogger("finetunekit.data")

PILLOW, PNG, JPEG = 0, 1, 2
"""Decoder kinds: Pillow; TensorFlow's PNG decoder; TensorFlow's JPEG decoder at ratio
1, 2, 4, 8 (kinds 2 to 5)."""

_RATIOS = (1, 2, 4, 8)

_CONVERSIONS = {"L": "grayscale", "1": "grayscale", "P": "palette", "CMYK": "cmyk",
                "RGBA": "alpha", "LA": "alpha", "PA": "alpha", "I;16": "16bit",
                "I;16B": "16bit", "I": "16bit"}


def default_decoder() -> str:
    """``"tf"`` on the TensorFlow backend, else ``"pillow"``."""
    import keras

    return "tf" if keras.backend.backend() == "tensorflow" else "pillow"


def probe(path: Path, size: tuple[int, int]) -> tuple[int, str | None]:
    """The header pass for one file: ``(decoder kind, conversion)``; raises
    :class:`SkippedImage` for a file that cannot be an image, as the full decode would."""
    from PIL import Image, UnidentifiedImageError

    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        raise SkippedImage("broken_link" if path.is_symlink() else "missing_file") from exc
    except OSError as exc:
        raise SkippedImage("unreadable", f"{type(exc).__name__}: {exc}") from exc
    if path.is_dir():
        raise SkippedImage("not_a_file")
    if stat.st_size == 0:
        raise SkippedImage("empty_file")
    try:
        with Image.open(path) as image:
            mode, fmt, info = image.mode, image.format, image.info
            width, height = image.size
            rotated = _orientation(image) != 1
    except PermissionError as exc:
        raise SkippedImage("unreadable", f"{type(exc).__name__}: {exc}") from exc
    except Image.DecompressionBombError as exc:
        raise SkippedImage("too_large", str(exc)) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if "truncated" in str(exc).lower():
            raise SkippedImage("truncated", str(exc)) from exc
        with open(path, "rb") as handle:
            head = handle.read(16)
        raise SkippedImage("corrupt" if _looks_like_image(head) else "not_an_image") from exc
    conversion = "alpha" if mode == "P" and "transparency" in info else _CONVERSIONS.get(mode)
    if mode not in ("RGB", "L") or rotated or "transparency" in info:
        return PILLOW, conversion
    if fmt == "PNG":
        return PNG, conversion
    if fmt == "JPEG":  # the largest DCT scale that still covers the input, as Pillow's draft
        scale = min(width // max(size), height // max(size))
        ratio = max([r for r in _RATIOS if r <= scale] or [1])
        return JPEG + _RATIOS.index(ratio), conversion
    return PILLOW, conversion


class FileExamples(Examples):
    """Image files of one split, decoded on demand to uint8 at the input size.

    Args:
        paths: list of Path. The files that passed the header pass.
        labels: int array, one per path.
        size: (height, width).
        kinds: int array. Each file's decoder kind from :func:`probe`.
        decoder: ``"tf"`` or ``"pillow"`` (:func:`default_decoder`).
        strict: bool. Refuse a file that fails to decode instead of skipping it.
        report: dict or None. ``Data.report``, counted in when a file fails.
        split: str. The split's key in the report (``"train"``, ``"validation"``).
        key: str. Recipe section named in messages.
    """

    dtype = "uint8"
    can_fail = True  # a file can pass the header pass and fail to decode

    def __init__(self, paths: list[Path], labels: np.ndarray, size: tuple[int, int],
                 kinds: np.ndarray, *, decoder: str = "pillow", strict: bool = False,
                 report: dict | None = None, split: str = "train", key: str = "data"):
        self.paths = [str(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int32)
        self.size = tuple(size)
        self.shape = (*self.size, 3)
        self.kinds = np.asarray(kinds, dtype=np.int32)
        self.decoder, self.strict, self.report = decoder, strict, report
        self.split, self.key = split, key
        self.failed: dict[int, str] = {}  # index -> reason
        self._reported: set[int] = set()
        self._lock = threading.Lock()
        self._tf_decode = None
        self._tf_one = None

    # -- reading from Python --------------------------------------------------------------

    def read(self, indices: np.ndarray) -> np.ndarray:
        x, kept = self.read_available(indices)
        if len(x) != len(indices):
            bad = np.setdiff1d(np.arange(len(indices)), kept)
            raise DataError(f"Could not decode '{printable(self.paths[int(indices[bad[0]])])}'.")
        return x

    def read_available(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.empty((len(indices), *self.shape), dtype=np.uint8)
        kept = np.zeros(len(indices), dtype=bool)
        for k, index in enumerate(np.asarray(indices)):
            try:
                x[k] = self._decode_one(int(index))
                kept[k] = True
            except SkippedImage as exc:
                self._fail(int(index), exc.reason)
        return (x if kept.all() else x[kept]), kept

    def _decode_one(self, index: int) -> np.ndarray:
        if self.decoder == "tf":
            import tensorflow as tf

            if self._tf_one is None:
                self._tf_one = tf.function(self.tf_decoder(), reduce_retracing=True,
                                           input_signature=[tf.TensorSpec((), tf.int64)])
            try:
                return self._tf_one(tf.constant(index, tf.int64)).numpy()
            except tf.errors.OpError as exc:
                raise SkippedImage(self.failed.get(index, "corrupt")) from exc
        return self._pillow(index)

    def _pillow(self, index: int) -> np.ndarray:
        return decode_image(read_file(Path(self.paths[index])), self.size)[0]

    def read_workers(self) -> int:
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return os.cpu_count() or 1

    # -- reading in tf.data -----------------------------------------------------------------

    def tf_decoder(self) -> Any:
        if self.decoder != "tf":
            return None
        if self._tf_decode is None:
            self._tf_decode = self._make_tf_decoder()
        return self._tf_decode

    def _make_tf_decoder(self) -> Any:
        import tensorflow as tf

        paths, kinds = tf.constant(self.paths), tf.constant(self.kinds)
        height, width = self.size

        def resized(image):
            image = tf.image.resize(image, (height, width), method="bilinear", antialias=False)
            return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)

        def pillow_one(index):
            try:
                return self._pillow(int(index))
            except SkippedImage as exc:
                self._note(int(index), exc.reason)  # the precise reason, reported once
                raise

        @tf.autograph.experimental.do_not_convert  # no Python control flow on tensors
        def decode(index):
            path = paths[index]

            def pillow():
                return tf.numpy_function(pillow_one, [index], tf.uint8, stateful=False)

            def png():
                return resized(tf.io.decode_png(tf.io.read_file(path), channels=3))

            def jpeg(ratio):
                return lambda: resized(tf.io.decode_jpeg(tf.io.read_file(path), channels=3,
                                                         ratio=ratio))

            image = tf.switch_case(kinds[index], [pillow, png, *(jpeg(r) for r in _RATIOS)])
            return tf.ensure_shape(image, (height, width, 3))

        return decode

    # -- failures ---------------------------------------------------------------------------

    def unreadable(self, indices: np.ndarray) -> None:
        for index in np.asarray(indices):
            self._fail(int(index), self.failed.get(int(index), "corrupt"))

    def _note(self, index: int, reason: str) -> None:
        with self._lock:
            self.failed.setdefault(index, reason)

    def _fail(self, index: int, reason: str) -> None:
        name = printable(self.paths[index])
        if self.strict:
            raise DataError(
                f"{self.key}.strict = true refuses '{name}' ({REASONS[reason]}): it passed the "
                "header check before training but failed to decode. Fix or remove it, or set "
                f"{self.key}.strict = false to skip it (it is then counted in Data.report).")
        with self._lock:
            self.failed[index] = reason
            if index in self._reported:
                return  # reported once: it fails again at every epoch
            self._reported.add(index)
            if self.report is not None:
                split = self.report["splits"][self.split]
                split["skipped"].setdefault(reason, []).append(name)
                split["loaded"] -= 1
                self.report["loaded"] -= 1
                self.report["skipped"] += 1
                by_reason = self.report["skipped_by_reason"]
                by_reason[reason] = by_reason.get(reason, 0) + 1
        logger.warning("Skipped '%s' while training (%s): it passed the header check but "
                       "failed to decode; dropped from its batch, counted in Data.report. "
                       "Set %s.strict = true to refuse instead.", name, REASONS[reason], self.key)

    def fingerprint(self) -> bytes:
        digest = hashlib.sha256(repr((self.size, self.decoder)).encode())
        for path in self.paths:
            try:
                stat = os.stat(path)
                digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{path}\0missing\n".encode())
        digest.update(np.ascontiguousarray(self.labels).data)
        return digest.digest()
