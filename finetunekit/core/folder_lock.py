"""The run-folder lock: one process writes a run folder.

A process that writes a run folder holds its lock (:func:`hold_run_folder`) from before
it looks at the folder until it is done, so two runs can never write one folder. The lock
is ``fcntl.flock`` on ``.finetunekit.lock`` inside the folder, not a file created with
``O_EXCL``: the kernel releases a flock when its process dies, ``kill -9`` included, so a
killed run leaves no lock that blocks the next one and no pid has to be trusted (pids are
reused, and mean nothing on another host). The file holds the holder's pid, host, start
time and command, for the message that refuses a second process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from finetunekit.core.errors import PersistenceError, environment_error, printable
from finetunekit.core.run_folder import CHECKPOINT_DIR, LOCK_FILE

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

logger = logging.getLogger("finetunekit.engine")

# finetunekit's own temporary names, and nothing else: atomic_write's
# ".recipe.toml.<8 chars>.tmp", atomic_save's ".model.keras.<8 hex>.tmp.keras" and
# ".model.savedmodel.<8 hex>.old", and the checkpoints' ".epoch-0001.ckpt.<8 chars>.tmp"
_TEMPORARY = re.compile(
    r"^\.(?:recipe\.toml|history\.json|history\.csv|plan\.json|model\.[\w.]+?|"
    r"epoch-\d+\.ckpt)\.[a-z0-9_]{8}\.(?:tmp(?:\.[\w.]+)?|old)$")

logger = logging.getLogger("finetunekit.run_folder")


def _holder_text(info: dict[str, Any]) -> str:
    if not info:
        return "a process that has not written its details yet"
    return (f"pid {info.get('pid')} on host '{printable(info.get('host'))}', started "
            f"{printable(info.get('started'))}, command '{printable(info.get('command'))}'")


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 65536, 0)
        info = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        return info if isinstance(info, dict) else {"command": str(info)}
    except (OSError, ValueError):
        return {"command": "(unreadable lock file)"}


def _unwritable(path: Path, exc: OSError) -> PersistenceError:
    cause = environment_error(exc, "preparing the run folder")
    if cause is not None:
        return PersistenceError(f"save.path '{printable(path)}' cannot be written, checked "
                                f"before training: {cause}")
    return PersistenceError(
        f"save.path '{printable(path)}' cannot be written, checked before training: "
        f"{type(exc).__name__}: {printable(exc.strerror or exc)}. Choose a folder you can write.")


@contextlib.contextmanager
def hold_run_folder(path: Path, command: str) -> Iterator[Path]:
    """Hold the run folder `path` for this process while the block runs.

    Creates the folder if needed (so an unwritable save.path is found before any
    training), takes its lock, and removes the temporary files a killed run left
    (:func:`remove_temporary_files`). On leaving, also after an error, the lock is
    released and a folder this call created and left empty is removed.

    Args:
        path: Path. The run folder.
        command: str. What this process does there (``"run"``, ``"resume"``, ...), for
            the message that refuses another process.

    Raises:
        PersistenceError: another process holds the folder (the message names it:
            pid, host, start time, command), or the folder cannot be written.
    """
    if path.exists() and not path.is_dir():
        raise PersistenceError(
            f"save.path '{printable(path)}' is a file; give a folder for the run.")
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    fd = _lock(path)
    try:
        stale = _read_holder(fd)
        if stale:
            logger.warning("Run folder '%s': taking over the lock of %s, which is no longer "
                           "running (killed?).", printable(path), _holder_text(stale))
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "command": f"{command}: {' '.join(sys.argv)}"}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode("utf-8"), 0)
            os.fsync(fd)
        except OSError as exc:
            raise _unwritable(path, exc) from exc
        remove_temporary_files(path)
        yield path
    finally:
        # unlink while still holding the lock: a process waiting on the old file notices
        # (its file is no longer the one at the path) and tries again
        with contextlib.suppress(OSError):
            os.unlink(path / LOCK_FILE)
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                path.rmdir()  # only if empty: a build that failed leaves nothing behind


def _lock(path: Path) -> int:
    lock = path / LOCK_FILE
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _unwritable(path, exc) from exc
        if fcntl is None:  # Windows: no flock; the folder is not guarded there
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise _held(path, holder) from None
        except OSError as exc:
            os.close(fd)
            raise _unwritable(path, exc) from exc
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file as we opened it: take the new one


def refuse_if_held(path: Path) -> None:
    """Raise the error :func:`hold_run_folder` would if another process holds `path`;
    nothing otherwise. For a check that runs before the folder is held (``resume``
    reading a folder whose run has not written its recipe yet)."""
    if fcntl is None:
        return
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # no lock file: nobody holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _held(path, _read_holder(fd)) from None
    except OSError:
        pass
    finally:
        os.close(fd)


def _held(path: Path, holder: dict[str, Any]) -> PersistenceError:
    return PersistenceError(
        f"Run folder '{printable(path)}' is in use by another finetunekit process: "
        f"{_holder_text(holder)}. Two processes must not write one run folder. Wait "
        "for it to end (its lock goes with it, even if it is killed), or choose "
        "another save.path.")


def remove_temporary_files(path: Path) -> list[Path]:
    """Remove the temporary files a killed run left in run folder `path` and its
    checkpoints folder; only finetunekit's own temporary names (``.recipe.toml.*.tmp``,
    ``.model.keras.*.tmp.keras``, ``.epoch-0001.ckpt.*.tmp``, ...). Call it holding the
    folder's lock. Returns what was removed."""
    removed = []
    for folder in (path, path / CHECKPOINT_DIR):
        if not folder.is_dir():
            continue
        for item in folder.iterdir():
            if not _TEMPORARY.match(item.name):
                continue
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)
            removed.append(item)
    if removed:
        logger.warning("Run folder '%s': removed %d temporary file(s) an interrupted run left "
                       "(%s).", printable(path), len(removed),
                       ", ".join(printable(p.name) for p in removed[:3]))
    return removed
