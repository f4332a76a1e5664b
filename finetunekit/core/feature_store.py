"""The feature cache on disk: one folder per entry, float32 shards, a manifest written last.

Layout of a cache folder (shared by every process and engine that names it)::

    <folder>/<key>/manifest.json     what the entry holds; its mtime is the last use
    <folder>/<key>/00000.npy ...     rows_per_shard rows each (the last one fewer)
    <folder>/.tmp-<key>-<random>/    an entry being computed
    <folder>/.trash-<key>-<random>/  an entry being removed
    <folder>/.lock                   held while evicting: one evictor at a time

Why it is safe to kill a computation and to share the folder between processes:

- An entry is written whole in a temporary folder (shards fsynced, manifest last) and
  renamed into place, so ``<key>/`` appears complete or not at all; a ``<key>/`` without
  a manifest is never trusted (removed and recomputed). A killed writer leaves its
  ``.tmp-`` folder, whose ``.writing`` file it held a ``flock`` on; the next eviction
  pass removes temporary folders whose lock nobody holds (the kernel drops a flock with
  its process, ``kill -9`` included, so no pid has to be trusted).
- Every reader holds a shared ``flock`` on the entry's manifest while its
  :class:`ShardedExamples` lives. Removal takes the exclusive lock without waiting and
  skips the entry if that fails, so an entry in use by any process (or by another
  engine of this one) is never removed; then it renames the folder to ``.trash-`` (one
  atomic step: no reader ever sees half an entry) and deletes it.
- A reader that opened the manifest as it was being renamed away sees that the path no
  longer names its file and treats the entry as missing.

Without ``fcntl`` (Windows) there are no locks: eviction then skips only the entries
this process has open, and killed computations are cleaned by ``finetunekit cache clear``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import time
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from finetunekit.core.errors import DataError
from finetunekit.core.examples import Examples

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

FORMAT = 1
"""Version of the layout above; part of every key, so a new layout never reads an old one."""

MANIFEST = "manifest.json"

DEFAULT_DISK_LIMIT = 50 << 30
LIMIT_ENV = "FINETUNEKIT_CACHE_LIMIT"
"""Size of the cache folder before least-recently-used eviction, e.g. ``20GiB``."""

logger = logging.getLogger("finetunekit.feature_cache")


def default_folder() -> Path:
    """``$FINETUNEKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/finetunekit/features``."""
    if os.environ.get("FINETUNEKIT_CACHE_DIR"):
        return Path(os.environ["FINETUNEKIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "finetunekit" / "features"


_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40}


def parse_size(text: str, what: str = LIMIT_ENV) -> int:
    """Bytes from ``"20GiB"``, ``"500MB"``, ``"1.5g"`` or ``"1048576"``.

    Raises:
        DataError: `text` is not a size (the message names `what`).
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([kmgt]i?)?b?\s*", str(text).lower())
    if not match:
        raise DataError(f"{what} must be a size such as 20GiB, 500MB or 1048576 (bytes). "
                        f"Received: {text!r}.")
    return int(float(match.group(1)) * _UNITS[match.group(2) or ""])


def default_disk_limit() -> int:
    """``$FINETUNEKIT_CACHE_LIMIT`` if set, else 50 GiB."""
    value = os.environ.get(LIMIT_ENV)
    return parse_size(value) if value else DEFAULT_DISK_LIMIT


def _lock(fd: int, exclusive: bool, wait: bool = True) -> bool:
    if fcntl is None:
        return True
    flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB)
    try:
        fcntl.flock(fd, flags)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold the cache folder's ``.lock`` (waiting for it) while the block runs."""
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        _lock(fd, exclusive=True)
        yield
    finally:
        os.close(fd)  # closing releases the flock


class ShardedExamples(Examples):
    """An entry's features, read by index from its shard files.

    :meth:`read` sorts the indices and reads each run of consecutive rows with one
    ``preadv`` straight into its rows of the result, so nothing but the result is ever
    in memory. (Reading through a memory map instead would count the mapped pages in
    the process's resident memory, and the kernel maps whole folios, often megabytes,
    around each row; where ``os.preadv`` is missing, on Windows, the shards are
    memory-mapped all the same.)

    The labels come from the examples the features were computed from (always in
    memory). Holds a shared lock on the entry while open (:func:`remove` skips it) and
    one descriptor per shard. Use :func:`open_entry` to get one.
    """

    dtype = "float32"

    def __init__(self, path: Path, manifest: dict[str, Any], labels: np.ndarray, fd: int):
        self.path, self.key, self.labels = path, manifest["key"], labels
        self.shape = tuple(manifest["shape"])
        self.rows_per_shard = int(manifest["rows_per_shard"])
        self._rows = int(manifest["rows"])
        self.dropped = [int(i) for i in manifest.get("dropped", [])]  # rows not readable
        self._row_bytes = int(np.prod(self.shape)) * 4
        self._fds, self._offsets, self._arrays = [fd], [], []
        self._closer = weakref.finalize(self, _close, self._fds)
        try:
            for name in manifest["shards"]:
                if not hasattr(os, "preadv"):
                    self._arrays.append(np.load(path / name, mmap_mode="r"))
                    continue
                with open(path / name, "rb") as file:
                    version = np.lib.format.read_magic(file)
                    (np.lib.format.read_array_header_1_0 if version == (1, 0)
                     else np.lib.format.read_array_header_2_0)(file)
                    self._offsets.append(file.tell())
                self._fds.append(os.open(path / name, os.O_RDONLY | os.O_CLOEXEC))
        except (OSError, ValueError):
            self._closer()  # the entry's lock too, so that it can be removed
            raise

    def read(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self._rows):
            raise IndexError(f"Feature cache entry {self.key} has rows 0..{self._rows - 1}. "
                             f"Received indices from {indices.min()} to {indices.max()}.")
        out = np.empty((len(indices), *self.shape), np.float32)
        if not len(indices):
            return out
        order = np.argsort(indices, kind="stable")
        ordered = indices[order]
        shard_of = ordered // self.rows_per_shard
        if self._arrays:
            for shard in np.unique(shard_of):
                at = shard_of == shard
                out[order[at]] = self._arrays[shard][ordered[at] - shard * self.rows_per_shard]
            return out
        rows = list(out.reshape(len(indices), -1).view(np.uint8))  # each row's bytes
        breaks = np.flatnonzero((np.diff(ordered) != 1) | (np.diff(shard_of) != 0)) + 1
        starts, stops = np.r_[0, breaks], np.r_[breaks, len(ordered)]
        shards = shard_of[starts]
        offsets = np.asarray(self._offsets)[shards] + (
            ordered[starts] - shards * self.rows_per_shard) * self._row_bytes
        order = order.tolist()
        for start, stop, shard, offset in zip(starts.tolist(), stops.tolist(),
                                              shards.tolist(), offsets.tolist()):
            for first in range(start, stop, _IOV_MAX):  # a run of consecutive rows
                buffers = [rows[i] for i in order[first:min(stop, first + _IOV_MAX)]]
                got = os.preadv(self._fds[shard + 1], buffers,
                                offset + (first - start) * self._row_bytes)
                if got != len(buffers) * self._row_bytes:
                    raise OSError(f"Feature cache entry {self.key}: shard {shard} is "
                                  "shorter than its manifest says. Remove the entry with "
                                  f"`finetunekit cache clear {self.key[:12]}`.")
        return out

    def fingerprint(self) -> bytes:
        return self.key.encode() + np.ascontiguousarray(self.labels).tobytes()

    def close(self) -> None:
        """Close the shards and release the entry's lock (also done when collected)."""
        self._arrays = []
        self._closer()

    def __getstate__(self) -> dict[str, Any]:  # worker processes reopen the entry
        return {"path": str(self.path), "labels": self.labels}

    def __setstate__(self, state: dict[str, Any]) -> None:
        path = Path(state["path"])
        acquired = _acquire(path.parent, path.name)
        if acquired is None:
            raise FileNotFoundError(f"Feature cache entry {path} was removed.")
        fd, manifest = acquired
        self.__init__(path, manifest, state["labels"], fd)


_IOV_MAX = 512  # buffers per preadv; POSIX guarantees 16, Linux and macOS take 1024


def _close(fds: list) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()


def open_entry(folder: Path, key: str, labels: np.ndarray) -> ShardedExamples | None:
    """The entry `key` of `folder` as :class:`ShardedExamples` (with `labels`), its use
    recorded; None if there is no complete entry (a folder without a manifest, or one of
    another format, is removed so that it is recomputed)."""
    acquired = _acquire(folder, key)
    if acquired is None:
        return None
    fd, manifest = acquired
    if len(labels) != manifest["rows"]:
        os.close(fd)
        raise ValueError(f"Feature cache entry {key} holds {manifest['rows']} rows but "
                         f"{len(labels)} labels were given.")
    try:
        return ShardedExamples(folder / key, manifest, labels, fd)
    except (OSError, ValueError) as exc:  # a shard missing or damaged
        logger.warning("Feature cache entry %s is damaged (%s): recomputing.", key, exc)
        remove(folder / key)
        return None


def _acquire(folder: Path, key: str) -> tuple[int, dict[str, Any]] | None:
    # the manifest's descriptor, holding a shared lock, and what it says
    path = folder / key
    manifest_path = path / MANIFEST
    try:
        fd = os.open(manifest_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if path.is_dir():
            logger.warning("Feature cache entry %s has no manifest (an interrupted "
                           "computation?): not trusted, recomputing.", key)
            remove(path)
        return None
    try:
        _lock(fd, exclusive=False)
        if not os.path.samestat(os.fstat(fd), os.stat(manifest_path)):
            raise FileNotFoundError  # renamed away (removed) while we opened it
        manifest = json.loads(os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8"))
        if manifest.get("format") != FORMAT or manifest.get("key") != key:
            raise ValueError(f"format {manifest.get('format')}, key {manifest.get('key')}")
        os.utime(manifest_path)  # the last use, for least-recently-used eviction
    except FileNotFoundError:
        os.close(fd)
        return None
    except (OSError, ValueError) as exc:
        os.close(fd)
        logger.warning("Feature cache entry %s is unreadable (%s): recomputing.", key, exc)
        remove(path)
        return None
    return fd, manifest


def write_entry(folder: Path, key: str, rows: int, shape: tuple[int, ...],
                chunks: Iterable[np.ndarray], info: dict[str, Any], shard_bytes: int) -> None:
    """Write an entry of `rows` float32 rows of `shape`, given in order by `chunks`, as
    ``folder/key``: shards in a temporary folder, the manifest last, then one rename.
    If another process committed the same key first, its entry is kept."""
    folder.mkdir(parents=True, exist_ok=True)
    row_bytes = int(np.prod(shape)) * 4
    per_shard = max(1, shard_bytes // max(row_bytes, 1))
    tmp = folder / f".tmp-{key}-{secrets.token_hex(4)}"
    tmp.mkdir()
    fd = os.open(tmp / ".writing", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        _lock(fd, exclusive=True)
        names = [f"{i:05d}.npy" for i in range(-(-rows // per_shard))]
        _write_shards(tmp, names, rows, per_shard, shape, chunks)
        manifest = {"format": FORMAT, "key": key, "rows": rows, "shape": list(shape),
                    "dtype": "float32", "rows_per_shard": per_shard, "shards": names,
                    "nbytes": rows * row_bytes, "created": time.time(), **info}
        with open(tmp / MANIFEST, "w", encoding="utf-8") as file:
            json.dump(manifest, file, indent=1)
            file.flush()
            os.fsync(file.fileno())
        os.unlink(tmp / ".writing")
        try:
            os.rename(tmp, folder / key)
        except OSError:  # the key exists: another process won, or a manifest-less leftover
            if (folder / key / MANIFEST).is_file():
                return
            remove(folder / key)
            os.rename(tmp, folder / key)
    finally:
        os.close(fd)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _write_shards(tmp: Path, names: list[str], rows: int, per_shard: int,
                  shape: tuple[int, ...], chunks: Iterable[np.ndarray]) -> None:
    # plain sequential writes, not a writable memmap: dirty pages of a file being written
    # do not count in the process's resident memory, a memmap's do
    shard, file, left, written = -1, None, 0, 0
    try:
        for chunk in chunks:
            chunk = np.ascontiguousarray(chunk, dtype=np.float32)
            while len(chunk):
                if left == 0:
                    if file is not None:
                        _finish(file)
                    shard += 1
                    count = min(per_shard, rows - shard * per_shard)
                    file = open(tmp / names[shard], "wb")
                    np.lib.format.write_array_header_2_0(
                        file, {"descr": "<f4", "fortran_order": False, "shape": (count, *shape)})
                    left = count
                part, chunk = chunk[:left], chunk[left:]
                file.write(part.tobytes())
                left -= len(part)
                written += len(part)
        if written != rows:
            raise ValueError(f"expected {rows} feature rows, computed {written}")
    finally:
        if file is not None:
            _finish(file)


def _finish(file: Any) -> None:
    file.flush()
    os.fsync(file.fileno())
    file.close()


def remove(path: Path) -> bool:
    """Remove the entry (or leftover) folder `path`, unless a process has it open.
    Returns whether it was removed."""
    try:
        fd = os.open(path / MANIFEST, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        fd = None
    try:
        if fd is not None and not _lock(fd, exclusive=True, wait=False):
            return False
        trash = path.parent / f".trash-{path.name}-{secrets.token_hex(4)}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return False
    finally:
        if fd is not None:
            os.close(fd)
    shutil.rmtree(trash, ignore_errors=True)
    return True
