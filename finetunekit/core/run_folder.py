"""Run folders and atomic writes.

Nothing is ever written in place: a file or folder is written beside its final name and
renamed over it, so a kill leaves the old version or the new one, never half of one.
A run folder that holds anything is refused unless the user asks to overwrite it, and
then only finetunekit's own files are removed.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finetunekit.core.checkpoint import CHECKPOINT_DIR
from finetunekit.core.errors import PersistenceError

RUN_FILES = ("recipe.toml", "history.json", "history.csv", "plan.json")
"""Files a run folder holds besides the model and the checkpoints folder."""


def atomic_write(path: Path, text: str) -> None:
    """Write text beside `path`, flush it to disk, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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


def check_run_folder(path: Path, *, overwrite: bool) -> None:
    """Refuse a folder that holds something, unless `overwrite`; then clear only
    finetunekit's own files (model, recipe, history, plan, checkpoints)."""
    if path.exists() and not path.is_dir():
        raise PersistenceError(f"save.path '{path}' is a file; give a folder for the run.")
    if not path.is_dir() or not any(path.iterdir()):
        return
    if not overwrite:
        held = ", ".join(sorted(p.name for p in path.iterdir())[:5])
        raise PersistenceError(
            f"Run folder '{path}' is not empty (it holds {held}); finetunekit will not "
            "overwrite another run. Choose another save.path, or pass --overwrite "
            "(save.overwrite = true) to replace it, or 'finetunekit resume' to continue it."
        )
    for item in path.iterdir():
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
