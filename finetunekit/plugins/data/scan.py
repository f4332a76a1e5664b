"""The scan: every file of every split decoded once, before training starts.

A source (``folder``, ``csv``) lists the files of each split as an :class:`ImageList`;
:func:`load_images` decodes them all, in threads (Pillow releases the GIL while it
decodes and resizes), into preallocated uint8 arrays at the model's input size. A file
that cannot be used is skipped and counted by reason or, with ``strict``, refused with a
:class:`~finetunekit.DataError` naming it. Either way nothing is left to fail once
training has started.

The outcome is returned as a plain dict (``Data.report``) and summed up in one log line
on the ``finetunekit.data`` logger: a warning when something was skipped.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from finetunekit.core.errors import DataError, printable
from finetunekit.core.params import Param
from finetunekit.plugins.data.images import REASONS, SkippedImage, decode_image, read_file
from finetunekit.plugins.data.memory import check_fits, keeps_in_memory, megabytes

logger = logging.getLogger("finetunekit.data")


# -------------------------------------------------------------------------
# splits: what a source found, before decoding anything
# -------------------------------------------------------------------------


@dataclass
class ImageList:
    """The files of one split, as a source listed them.

    Args:
        name: str. ``"train"`` or ``"validation"``: the split's key in the report.
        source: str. The folder or CSV file the list came from.
        paths: list of Path. Files to decode.
        labels: list of int. Class index of each path.
        skipped: dict. Reason -> entries already left out while listing (a CSV row with
            an unknown label, ...).
        skipped_labels: list of int. Class index of each such entry, where known.
        ignored: int. Files that are not images by their suffix, not loaded.
        every_class: bool. Each class must end up with at least one image.
    """

    name: str
    source: str
    paths: list[Path]
    labels: list[int]
    skipped: dict[str, list[str]] = field(default_factory=dict)
    skipped_labels: list[int] = field(default_factory=list)
    ignored: int = 0
    every_class: bool = True

    def skip(self, reason: str, entry: str, label: int | None = None) -> None:
        self.skipped.setdefault(reason, []).append(entry)
        if label is not None:
            self.skipped_labels.append(label)

    def subset(self, name: str, indices: Sequence[int], *, every_class: bool) -> ImageList:
        return ImageList(name, self.source, [self.paths[i] for i in indices],
                         [self.labels[i] for i in indices], ignored=0, every_class=every_class)


def stratified_split(files: ImageList, fraction: float, seed: int) -> tuple[ImageList, ImageList]:
    """Hold out `fraction` of each class (at least one image of any class with two or
    more), chosen by a generator seeded with `seed`, before anything is decoded."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(files.labels, dtype=np.int64)
    train, held = [], []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n = len(idx)
        k = 0 if n < 2 else min(n - 1, max(1, int(round(n * fraction))))
        held.extend(idx[:k].tolist())
        train.extend(idx[k:].tolist())
    train_files = files.subset("train", sorted(train), every_class=True)
    train_files.skipped, train_files.skipped_labels = files.skipped, files.skipped_labels
    train_files.ignored = files.ignored
    return train_files, files.subset("validation", sorted(held), every_class=False)


# -------------------------------------------------------------------------
# the scan
# -------------------------------------------------------------------------


@dataclass
class _Scanned:
    x: np.ndarray | None  # None after a header pass
    y: np.ndarray
    conversions: Counter
    skipped: dict[str, list[str]]
    skipped_per_class: Counter
    paths: list[Path] = field(default_factory=list)  # after a header pass: the usable files
    kinds: np.ndarray | None = None  # and their decoders (stream.probe)


def to_data(lists: list[ImageList], class_names: list[str], context: Any, *, strict: bool,
            validation_split: float | None, source: str, in_memory: Any = "auto") -> Any:
    """Hold out `validation_split` of the only list if asked, decode (or check the
    headers, to stream), and make a `Data`.

    Args:
        lists: one list (train) or two (train, validation).
        source: str. What the train list came from, for the message of an empty split.
        in_memory: ``"auto"``, True or False: ``data.in_memory`` (:func:`keeps_in_memory`).
            Streamed splits are :class:`~.stream.FileExamples`.
    """
    from finetunekit.core.components import Data

    if validation_split and len(lists) == 1:
        lists = list(stratified_split(lists[0], validation_split, context.seed))
        if not lists[1].paths:
            raise DataError(
                f"'data.validation_split' = {validation_split} holds out no image: every class "
                f"of '{source}' has fewer than 2. Add images, or drop the split."
            )
    size = tuple(context.input_shape[:2])
    if keeps_in_memory(in_memory, sum(len(f.paths) for f in lists), size):
        arrays, report = load_images(lists, class_names, size, strict=strict)
    else:
        arrays, report = index_images(lists, class_names, size, strict=strict)
    return Data(train=arrays["train"], validation=arrays.get("validation"),
                class_names=class_names, report=report)


SCAN_PARAMS = {
    "validation_split": Param(float, None, nullable=True, min=0.01, max=0.9,
                              help="fraction of each class of train held out instead"),
    "strict": Param(bool, False,
                    help="refuse unusable images or rows (naming them) instead of skipping them"),
    "in_memory": Param((str, bool), "auto", choices=("auto", True, False),
                       help="decode every image into memory (true), stream them from disk "
                            "(false), or in memory when it fits half the free memory (auto)"),
}
"""The ``[data]`` keys of every source that loads through :func:`to_data`."""


CHUNK = 16
"""Images a decoding thread takes at a time: one task per image spent more time handing
work between threads than small images take to decode."""


def _workers() -> int:
    # One thread per core: Pillow releases the GIL while it decodes, but its header
    # parsing is Python, and more threads than cores only contend for the GIL (measured:
    # 6 threads on 2 cores were 25-50% slower than 2; docs/data.md).
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _scan(files: ImageList, size: tuple[int, int], *, header_only: bool = False) -> _Scanned:
    from finetunekit.plugins.data.stream import probe

    n = len(files.paths)
    # filled in place: no stacking copy
    x = None if header_only else np.empty((n, size[0], size[1], 3), dtype=np.uint8)
    kinds = np.zeros(n, dtype=np.int32)
    outcome: list[str | None] = [None] * n
    failed: list[str | None] = [None] * n

    def decode(i: int) -> None:
        try:
            if header_only:
                kinds[i], outcome[i] = probe(files.paths[i], size)
            else:
                x[i], outcome[i] = decode_image(read_file(files.paths[i]), size)
        except SkippedImage as exc:
            failed[i] = exc.reason

    def decode_range(start: int) -> None:
        for i in range(start, min(start + CHUNK, n)):
            decode(i)

    workers = min(_workers(), -(-n // CHUNK))
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="finetunekit-decode") as pool:
            list(pool.map(decode_range, range(0, n, CHUNK)))
    else:
        for start in range(0, n, CHUNK):
            decode_range(start)
    skipped = {reason: list(entries) for reason, entries in files.skipped.items()}
    per_class = Counter(files.skipped_labels)
    keep = 0
    for i in range(n):  # compact in place, so skipping costs no copy of the array
        if failed[i] is not None:
            skipped.setdefault(failed[i], []).append(printable(files.paths[i]))
            per_class[files.labels[i]] += 1
            continue
        if keep != i and x is not None:
            x[keep] = x[i]
        keep += 1
    usable = [i for i in range(n) if failed[i] is None]
    y = np.asarray([files.labels[i] for i in usable], dtype=np.int32)
    conversions = Counter(c for c, bad in zip(outcome, failed) if c is not None and bad is None)
    if x is None:
        return _Scanned(None, y, conversions, skipped, per_class,
                        [files.paths[i] for i in usable], kinds[usable])
    return _Scanned(x[:keep], y, conversions, skipped, per_class)


def _reasons_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {REASONS[r]}" for r, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def load_images(lists: Sequence[ImageList], class_names: list[str], size: tuple[int, int], *,
                strict: bool = False, key: str = "data") -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
    """Decode every file of every split once; skip (or, if `strict`, refuse) bad ones.

    Args:
        lists: the splits, as listed by a source.
        class_names: list of str. Class index -> name.
        size: (height, width) of the model's input.
        strict: bool. Refuse with a :class:`DataError` naming the files instead of
            skipping them.
        key: str. Recipe section named in messages.

    Returns:
        ``({split: (x, y)}, report)``; see docs/data.md for the report's keys.

    Raises:
        DataError: before anything is decoded, if the arrays would not fit in the
            available memory; after the scan, in strict mode if anything was skipped, or
            if a split that must cover every class lost a class entirely.
    """
    check_fits(sum(len(f.paths) for f in lists), size)
    start = time.perf_counter()
    scanned = {f.name: _scan(f, size) for f in lists}
    report = _checked(lists, scanned, class_names, size, time.perf_counter() - start,
                      strict, key)
    return {name: (s.x, s.y) for name, s in scanned.items()}, report


def index_images(lists: Sequence[ImageList], class_names: list[str], size: tuple[int, int], *,
                 strict: bool = False, key: str = "data") -> tuple[dict[str, Any], dict]:
    """Check every file's header (decode nothing) and give each split as
    :class:`~.stream.FileExamples`, decoded on demand while training.

    Bad files are skipped or refused as by :func:`load_images`, with the same report
    (``memory_bytes`` 0, ``streamed`` true); a file that passes its header but fails to
    decode is skipped (or refused) later, when read, and counted in the report then.
    """
    from finetunekit.plugins.data.stream import FileExamples, default_decoder

    start = time.perf_counter()
    scanned = {f.name: _scan(f, size, header_only=True) for f in lists}
    report = _checked(lists, scanned, class_names, size, time.perf_counter() - start,
                      strict, key)
    report["memory_bytes"], report["streamed"] = 0, True
    decoder = default_decoder()
    return {name: FileExamples(s.paths, s.y, size, s.kinds, decoder=decoder, strict=strict,
                               report=report, split=name, key=key)
            for name, s in scanned.items()}, report


def _checked(lists, scanned, class_names, size, seconds, strict, key) -> dict:
    """Refuse (strict, an empty split, a lost class) or report and log."""
    by_reason: Counter = Counter()
    for s in scanned.values():
        by_reason.update({reason: len(entries) for reason, entries in s.skipped.items()})
    if strict and by_reason:
        entries = [(r, e) for s in scanned.values() for r, es in s.skipped.items() for e in es]
        shown = "; ".join(f"{printable(e)} ({REASONS[r]})" for r, e in entries[:10])
        more = f"; and {len(entries) - 10} more" if len(entries) > 10 else ""
        raise DataError(
            f"{key}.strict = true refuses {len(entries)} unusable file(s) or row(s) "
            f"({_reasons_text(by_reason)}): {shown}{more}. Fix or remove them, or set "
            f"{key}.strict = false to skip them (they are then counted in Data.report)."
        )
    for files in lists:
        s = scanned[files.name]
        if s.y.size == 0:
            raise DataError(
                f"{key}.{files.name} ('{printable(files.source)}') has no usable images"
                f"{' (' + _reasons_text({r: len(e) for r, e in s.skipped.items()}) + ')' if s.skipped else ''}."
                " Check the paths and files."
            )
        if files.every_class:
            loaded = np.bincount(s.y, minlength=len(class_names))
            empty = [i for i, n in enumerate(loaded) if n == 0]
            if empty:
                names = ", ".join(f"'{printable(class_names[i])}' ({s.skipped_per_class[i]} skipped)"
                                  for i in empty)
                raise DataError(
                    f"Every class needs at least one usable image in {key}.{files.name} "
                    f"('{printable(files.source)}'); none loaded for {names}. Fix those files, or leave "
                    "the class out."
                )

    report = _report(lists, scanned, class_names, by_reason, size, seconds, strict)
    _log(report)
    return report


def _report(lists, scanned, class_names, by_reason, size, seconds, strict) -> dict:
    splits = {}
    for files in lists:
        s = scanned[files.name]
        counts = np.bincount(s.y, minlength=len(class_names))
        splits[files.name] = {
            "source": files.source,
            "found": len(s.y) + sum(len(e) for e in s.skipped.values()),
            "loaded": int(len(s.y)),
            "ignored": files.ignored,
            "per_class": {name: int(n) for name, n in zip(class_names, counts)},
            "skipped": {reason: entries for reason, entries in sorted(s.skipped.items())},
            "converted": dict(sorted(s.conversions.items())),
        }
    loaded = sum(split["loaded"] for split in splits.values())
    converted: Counter = Counter()
    for s in scanned.values():
        converted.update(s.conversions)
    return {
        "loaded": loaded,
        "skipped": sum(by_reason.values()),
        "skipped_by_reason": dict(sorted(by_reason.items())),
        "converted": dict(sorted(converted.items())),
        "memory_bytes": loaded * size[0] * size[1] * 3,
        "seconds": round(seconds, 3),
        "strict": strict,
        "splits": splits,
    }


def _log(report: dict) -> None:
    found = sum(split["found"] for split in report["splits"].values())
    if report["skipped"]:
        examples = [e for split in report["splits"].values() for es in split["skipped"].values()
                    for e in es][:3]
        logger.warning(
            "Skipped %d of %d images: %s (e.g. %s). Details in Data.report; "
            "set data.strict = true to refuse instead.",
            report["skipped"], found, _reasons_text(report["skipped_by_reason"]),
            ", ".join(printable(e) for e in examples),
        )
    else:
        logger.info("Loaded %d images (%s in memory) in %.1f s%s.", report["loaded"],
                    megabytes(report["memory_bytes"]), report["seconds"],
                    f"; converted {report['converted']}" if report["converted"] else "")
