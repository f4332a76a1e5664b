"""``finetunekit predict``'s work: image files and folders in, the likeliest classes out
(named as the model was trained), unusable files reported and skipped."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from finetunekit.core.errors import DataError, PersistenceError
from finetunekit.core.inference import LoadedModel, Predictions
from finetunekit.core.run_folder import atomic_write
from finetunekit.plugins.data.images import (
    IMAGE_SUFFIXES,
    REASONS,
    SkippedImage,
    decode_image,
    list_images,
    read_file,
)

CHUNK = 256
"""Files decoded at a time: memory stays bounded however many files are given."""


@dataclass
class PredictedFiles:
    """Predictions for files: one row per usable file, and the files skipped.

    Attributes:
        rows: list of dict. ``path``, ``predicted``, ``confidence`` and ``top_k`` (a list
            of ``{"class", "probability"}``, likeliest first).
        skipped: dict. Reason (a key of ``REASONS``) -> paths.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"predictions": self.rows, "skipped": self.skipped}, indent=2)

    def to_csv(self) -> str:
        k = max((len(row["top_k"]) for row in self.rows), default=1)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["path", "predicted", "confidence"]
                        + [f"{part}_{i}" for i in range(1, k + 1) for part in ("class", "probability")])
        for row in self.rows:
            writer.writerow([row["path"], row["predicted"], f"{row['confidence']:.6f}"]
                            + [v for t in row["top_k"] for v in (t["class"], f"{t['probability']:.6f}")])
        return buffer.getvalue()


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and the image files inside folders (recursively, sorted)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found, _ = list_images(path)
            if not found:
                raise DataError(f"Folder '{path}' holds no images ({', '.join(IMAGE_SUFFIXES)}).")
            files += found
        else:
            files.append(path)
    return files


def predict_files(engine: Any, loaded: LoadedModel, paths: Iterable[str | Path], *,
                  top_k: int = 1, tta: bool = False, batch_size: int = 32) -> PredictedFiles:
    """Decode the files (and folders' images) at the model's input size, in chunks, and
    predict them with :meth:`finetunekit.Engine.predict`."""
    files = expand(paths)
    size = tuple(loaded.input_shape[:2])
    result = PredictedFiles()
    for start in range(0, len(files), CHUNK):
        kept, images = [], []
        for path in files[start:start + CHUNK]:
            try:
                images.append(decode_image(read_file(path), size)[0])
                kept.append(path)
            except SkippedImage as exc:
                result.skipped.setdefault(exc.reason, []).append(str(path))
        if not kept:
            continue
        predictions: Predictions = engine.predict(loaded, np.stack(images), batch_size=batch_size,
                                                  tta=tta)
        for path, top in zip(kept, predictions.top_k(top_k)):
            result.rows.append({"path": str(path), "predicted": top[0][0], "confidence": top[0][1],
                                "top_k": [{"class": c, "probability": p} for c, p in top]})
    return result


def skipped_text(skipped: dict[str, list[str]]) -> str:
    """One line per reason: how many files, and the first few."""
    return "\n".join(f"skipped {len(entries)} file(s), {REASONS.get(reason, reason)}: "
                     f"{', '.join(entries[:3])}{' ...' if len(entries) > 3 else ''}"
                     for reason, entries in skipped.items())


def write_predictions(out: Path, result: PredictedFiles) -> Path:
    """Write ``.csv`` or ``.json`` (by the suffix); an existing file is refused."""
    if out.suffix.lower() not in (".csv", ".json"):
        raise PersistenceError(f"--out must end in .csv or .json. Received: '{out}'.")
    if out.exists():
        raise PersistenceError(f"'{out}' exists already; predict never overwrites it. "
                               "Pass another --out.")
    return atomic_write(out, result.to_csv() if out.suffix.lower() == ".csv" else result.to_json())
