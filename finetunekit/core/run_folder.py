"""Run folders: their layout, atomic writes, and finding a model and its recipe in one.

Nothing is ever written in place: a file or folder is written beside its final name and
renamed over it, so a kill leaves the old version or the new one, never half of one.
Checkpoints are written the same way (:mod:`finetunekit.core.checkpoint`). A run folder
that holds anything is refused unless the user asks to overwrite it, and then only
finetunekit's own files are removed.

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
import csv
import io
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from finetunekit.core.errors import PersistenceError, environment_error, printable

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
from finetunekit.core.recipe import Recipe

CHECKPOINT_DIR = "checkpoints"
"""Sub-folder of a run folder holding its epoch checkpoints."""

RUN_FILES = ("recipe.toml", "history.json", "history.csv", "plan.json", "optimizer.json",
             "lr_find.json", "lr_find.png", "curves.png", "report.md", "report.json")
"""Files a run folder holds besides the model and the checkpoints folder."""

LOCK_FILE = ".finetunekit.lock"
"""The run folder's lock, held by the process writing the folder (:func:`hold_run_folder`)."""

# finetunekit's own temporary names, and nothing else: atomic_write's
# ".recipe.toml.<8 chars>.tmp", atomic_save's ".model.keras.<8 hex>.tmp.keras" and
# ".model.savedmodel.<8 hex>.old", and the checkpoints' ".epoch-0001.ckpt.<8 chars>.tmp"
_TEMPORARY = re.compile(
    r"^\.(?:recipe\.toml|history\.json|history\.csv|plan\.json|model\.[\w.]+?|"
    r"epoch-\d+\.ckpt)\.[a-z0-9_]{8}\.(?:tmp(?:\.[\w.]+)?|old)$")

logger = logging.getLogger("finetunekit.run_folder")


def atomic_write(path: Path, content: str | bytes | Callable[[Any], None]) -> Path:
    """Write beside `path`, flush to disk, then rename over `path`.

    Args:
        path: Path. The final name.
        content: text, bytes, or ``write(handle)`` that writes to a binary file handle.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_save(path: Path, suffix: str, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary name beside `path`, then move it to `path`.

    Works for a file (one atomic rename) and for a folder such as a SavedModel (the
    old folder is moved aside first, then removed once the new one is in place).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp{suffix}"
    old = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.old"
    try:
        write(tmp)
        if tmp.is_dir():
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
        else:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    finally:
        for leftover in (tmp, old):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            elif leftover.exists():
                leftover.unlink()
    return path


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


def check_run_folder(path: Path, *, overwrite: bool) -> None:
    """Refuse a folder that holds something, unless `overwrite`; then clear only
    finetunekit's own files (model, recipe, history, plan, checkpoints). Its lock file
    does not count."""
    if path.exists() and not path.is_dir():
        raise PersistenceError(
            f"save.path '{printable(path)}' is a file; give a folder for the run.")
    if not path.is_dir():
        return
    entries = [p for p in path.iterdir() if p.name != LOCK_FILE]
    if not entries:
        return
    if not overwrite:
        held = ", ".join(printable(name) for name in sorted(p.name for p in entries)[:5])
        raise PersistenceError(
            f"Run folder '{printable(path)}' is not empty (it holds {held}); finetunekit will not "
            "overwrite another run. Choose another save.path, or pass --overwrite "
            "(save.overwrite = true) to replace it, or 'finetunekit resume' to continue it."
        )
    for item in entries:
        if item.name == CHECKPOINT_DIR:
            shutil.rmtree(item)
        elif item.name in RUN_FILES or item.name.startswith("model."):
            shutil.rmtree(item) if item.is_dir() else item.unlink()


def history_csv(history: list[dict[str, Any]]) -> str:
    """History rows as CSV text, columns in order of first appearance."""
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def write_run_files(path: Path, recipe: Recipe, history: list[dict[str, Any]],
                    plan: dict[str, Any]) -> None:
    """Write the recipe as run, the history (JSON and CSV) and the plan beside the model."""
    atomic_write(path / "recipe.toml", recipe.to_toml())
    atomic_write(path / "history.json", json.dumps(history, indent=2))
    atomic_write(path / "history.csv", history_csv(history))
    atomic_write(path / "plan.json", json.dumps(plan, indent=2))


def save_model(catalogue: Any, fmt: Any, model: Any, path: Path, run: Any = None) -> Path:
    """Write `model` to `path` with format component `fmt`, atomically."""
    if not path.name.endswith(fmt.suffix):
        raise PersistenceError(
            f"Format '{fmt.name}' writes '{fmt.suffix}' files. Received path '{path}'. "
            f"Use a path ending in '{fmt.suffix}'.")
    def write(tmp: Path) -> None:
        catalogue.call("format", fmt, "save", model, tmp, run)
        if run is not None and getattr(run, "class_names", None):
            write_model_info(tmp, {"class_names": list(run.class_names)})

    return atomic_save(path, fmt.suffix, write)


def locate_model(path: Path, catalogue: Any, format: str | None = None) -> tuple[Path, Any]:
    """The model file `path` means (a run folder's ``model.<suffix>``, or the file itself)
    and its format component: the one named `format`, else the one whose suffix the
    file name ends with."""
    formats = [catalogue.get("format", name) for name in catalogue.names("format")]
    if path.is_dir() and not any(path.name.endswith(f.suffix) for f in formats):
        inside = [path / f"model{f.suffix}" for f in formats if (path / f"model{f.suffix}").exists()]
        if not inside:
            raise PersistenceError(
                f"'{path}' is a folder without a saved model (model.keras, ...). Give a "
                "model file or a run folder written by 'finetunekit run'.")
        path = inside[0]
    if not path.exists():
        raise PersistenceError(f"No such model file: '{path}'.")
    if format is not None:
        return path, catalogue.get("format", format, key="format")
    matches = [f for f in formats if path.name.endswith(f.suffix)]
    if not matches:
        raise PersistenceError(
            f"Cannot tell the format of '{path}' from its name. Known suffixes: "
            f"{', '.join(sorted(f.suffix for f in formats))}. Pass the format.")
    return path, max(matches, key=lambda f: len(f.suffix))


def recipe_beside(file: Path) -> Recipe:
    """The ``recipe.toml`` of the run folder holding `file`."""
    beside = file.parent / "recipe.toml"
    if not beside.is_file():
        raise PersistenceError(
            f"'{file}' needs its recipe, and there is no recipe.toml beside it. Pass the "
            "recipe it was trained with (--recipe FILE, or recipe=...).")
    return Recipe.from_toml(beside)


def retrain_recipe(recipe: Recipe, file: Path) -> Recipe:
    """`recipe` for training the model in `file` further: the weights come from the file,
    not ``backbone.weights``, and the new run never writes over the run it came from."""
    changes: dict[str, Any] = {"backbone.weights": "none"}
    target = recipe["save"]["path"]
    if target and Path(target).resolve() == file.parent.resolve():
        changes["save.path"] = f"{file.parent}-retrained"
    return recipe.with_overrides(changes)


MODEL_INFO = "finetunekit.json"
"""Name of the JSON that finetunekit stores inside a saved model (its class names)."""


def write_model_info(path: Path, info: dict[str, Any]) -> None:
    """Store `info` inside a saved model, whatever its format, so a bare model file
    knows its class names: an entry ``finetunekit.json`` of a zip (``.keras``, a
    ``.ckpt`` checkpoint), an attribute ``finetunekit`` of an HDF5 file (``.h5``,
    ``.weights.h5``), a file ``finetunekit.json`` in a folder (SavedModel). Keras and
    TensorFlow ignore all three when they load the model."""
    import zipfile

    import h5py

    text = json.dumps(info)
    if path.is_dir():
        (path / MODEL_INFO).write_text(text, encoding="utf-8")
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path, "a") as archive:
            if MODEL_INFO not in archive.namelist():
                archive.writestr(MODEL_INFO, text)
    elif h5py.is_hdf5(str(path)):
        with h5py.File(str(path), "a") as handle:
            handle.attrs["finetunekit"] = text


def read_model_info(path: Path) -> dict[str, Any]:
    """What :func:`write_model_info` stored in a saved model; {} if nothing."""
    import zipfile

    import h5py

    try:
        if path.is_dir():
            file = path / MODEL_INFO
            return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if MODEL_INFO in archive.namelist():
                    return json.loads(archive.read(MODEL_INFO))
        elif h5py.is_hdf5(str(path)):
            with h5py.File(str(path), "r") as handle:
                if "finetunekit" in handle.attrs:
                    return json.loads(handle.attrs["finetunekit"])
    except (OSError, ValueError):
        pass
    return {}


def class_names_of(file: Path) -> list[str] | None:
    """The class names a model was trained with: stored inside the model file, else
    in the ``plan.json`` of the run folder beside it; None if neither knows them."""
    names = read_model_info(file).get("class_names")
    # an epoch checkpoint lies in <run folder>/checkpoints/
    folder = file.parent.parent if file.parent.name == CHECKPOINT_DIR else file.parent
    plan = folder / "plan.json"
    if not names and plan.is_file():
        try:
            names = json.loads(plan.read_text(encoding="utf-8")).get("class_names")
        except ValueError:
            names = None
    return [str(name) for name in names] if names else None
