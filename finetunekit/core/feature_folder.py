"""A feature cache folder as a whole: its entries listed, and evicted least recently used
first under a size limit (:mod:`finetunekit.core.feature_store` writes, opens and removes
one entry; its docstring gives the folder's layout and why sharing it is safe)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetunekit.core.feature_store import MANIFEST, _lock, fcntl, folder_lock, remove

logger = logging.getLogger("finetunekit.feature_cache")


@dataclass
class Entry:
    """One complete entry of a cache folder, as :func:`entries` lists it.

    Attributes:
        key: str. The entry's key (its folder's name).
        path: Path. Its folder.
        manifest: dict. What ``manifest.json`` holds (rows, shape, backbone, created...).
        size: int. Bytes on disk.
        last_used: float. Seconds since the epoch, when an engine last asked for it.
    """

    key: str
    path: Path
    manifest: dict[str, Any]
    size: int
    last_used: float


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def entries(folder: Path) -> list[Entry]:
    """The complete entries of `folder`, least recently used first."""
    found = []
    if not folder.is_dir():
        return found
    for path in folder.iterdir():
        if path.name.startswith(".") or not path.is_dir():
            continue
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
            used = (path / MANIFEST).stat().st_mtime
            found.append(Entry(path.name, path, manifest, _size(path), used))
        except (OSError, ValueError):
            continue  # incomplete, or removed as we looked
    return sorted(found, key=lambda entry: entry.last_used)


def leftovers(folder: Path) -> list[Path]:
    """What interrupted work left in `folder`: entry folders without a manifest,
    temporary folders no live process is writing, and trash."""
    found = []
    if not folder.is_dir():
        return found
    for path in folder.iterdir():
        if not path.is_dir():
            continue
        if path.name.startswith(".trash-"):
            found.append(path)
        elif path.name.startswith(".tmp-"):
            if fcntl is not None and not _writer_alive(path):
                found.append(path)
        elif not path.name.startswith(".") and not (path / MANIFEST).exists():
            found.append(path)
    return found


def _writer_alive(tmp: Path) -> bool:
    try:
        fd = os.open(tmp / ".writing", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # no lock file: the writer was done or is gone
    try:
        return not _lock(fd, exclusive=True, wait=False)
    finally:
        os.close(fd)


def evict(folder: Path, limit: int, keep: Iterable[str] = ()) -> list[Entry]:
    """Remove least recently used entries of `folder` until the rest fit in `limit`
    bytes, and what interrupted work left. Never removes an entry named in `keep` or
    open in any process. Returns the entries removed."""
    keep = set(keep)
    removed = []
    with folder_lock(folder):
        for path in leftovers(folder):
            shutil.rmtree(path, ignore_errors=True)
        found = entries(folder)
        total = sum(entry.size for entry in found)
        for entry in found:
            if total <= limit:
                break
            if entry.key not in keep and remove(entry.path):
                removed.append(entry)
                total -= entry.size
    if total > limit:
        logger.warning("The feature cache in %s holds %d MiB, more than its limit of %d MiB: "
                       "the rest is in use.", folder, total >> 20, limit >> 20)
    return removed
