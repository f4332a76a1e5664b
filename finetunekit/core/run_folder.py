"""Run folders: their layout, atomic writes, and finding a model and its recipe in one.

Nothing is ever written in place: a file or folder is written beside its final name and
renamed over it, so a kill leaves the old version or the new one, never half of one.
Checkpoints are written the same way (:mod:`finetunekit.core.checkpoint`). A run folder
that holds anything is refused unless the user asks to overwrite it, and then only
finetunekit's own files are removed. The folder's lock is in
:mod:`finetunekit.core.folder_lock`; the class names stored inside saved models in
:mod:`finetunekit.core.model_info`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finetunekit.core.errors import PersistenceError, printable
from finetunekit.core.model_info import read_model_info, write_model_info
from finetunekit.core.recipe import Recipe

CHECKPOINT_DIR = "checkpoints"
"""Sub-folder of a run folder holding its epoch checkpoints."""

RUN_FILES = ("recipe.toml", "history.json", "history.csv", "plan.json", "optimizer.json",
             "lr_find.json", "lr_find.png", "curves.png", "report.md", "report.json")
"""Files a run folder holds besides the model and the checkpoints folder."""

LOCK_FILE = ".finetunekit.lock"
"""The run folder's lock, held by the process writing the folder (:func:`~finetunekit.core.folder_lock.hold_run_folder`)."""



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


def save_model(catalogue: Any, fmt: Any, model: Any, path: Path, run: Any = None,
               check: Callable[[Path], Any] | None = None) -> Path:
    """Write `model` to `path` with format component `fmt`, atomically; ``check(written)``,
    if given, sees the written file before it takes its name, and raises to refuse it
    (the file is removed, a previous one at `path` stays)."""
    if not path.name.endswith(fmt.suffix):
        raise PersistenceError(
            f"Format '{fmt.name}' writes '{fmt.suffix}' files. Received path '{path}'. "
            f"Use a path ending in '{fmt.suffix}'.")

    def write(tmp: Path) -> None:
        catalogue.call("format", fmt, "save", model, tmp, run)
        if run is not None and getattr(run, "class_names", None):
            write_model_info(tmp, {"class_names": list(run.class_names)})
        if check is not None:
            check(tmp)

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
