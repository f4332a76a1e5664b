"""Checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is one ``.ckpt`` file (a NumPy ``.npz`` zip, readable without pickle)
holding every variable of the model (weights, BatchNorm statistics, dropout seed
states), every variable of the optimizer (step count, which positions the learning-rate
schedule, and its moments), the epoch and stage reached, the history so far, the
recipe as TOML, and the training state beyond the model (``state``: a stop, early
stopping's counters and best weights, callbacks' and lifecycle plugins' state). Data order needs no state: the engine shuffles each epoch from
``(train.seed, epoch)``.

Writes are atomic: the file is written beside its final name, flushed to disk, then
renamed, so a kill at any moment leaves either the previous checkpoint or the new one
under a final name, never a truncated file.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from finetunekit.core.errors import PersistenceError, printable
from finetunekit.core.recipe import Recipe
from finetunekit.core.run_folder import CHECKPOINT_DIR, atomic_write

logger = logging.getLogger("finetunekit.engine")

SUFFIX = ".ckpt"
VERSION = 1
_NAME = re.compile(r"^epoch-(\d+)\.ckpt$")
_COUNTER = re.compile(r"_\d+(?=/|$)")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read back from disk.

    Attributes:
        path: Path of the file.
        epoch: int. Epochs completed when it was written.
        stage_index: int. The stage that was training.
        recipe: str. The recipe as TOML.
        history: list of dict. Per-epoch rows so far.
        steps_per_epoch: int or None. Batches per epoch (positions a cosine schedule).
        model: list of (variable path, array), in the model's variable order.
        optimizer: list of (variable path, array); empty if no optimizer was built.
        state: dict. The run's state beyond the model (:meth:`Run.checkpoint_state`),
            arrays put back in place; empty for a checkpoint written without it.
    """

    path: Path
    epoch: int
    stage_index: int
    recipe: str
    history: list[dict[str, Any]]
    steps_per_epoch: int | None
    model: list[tuple[str, np.ndarray]]
    optimizer: list[tuple[str, np.ndarray]]
    state: dict[str, Any] = field(default_factory=dict)


def split_arrays(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """`value` with every numpy array inside its dicts and lists moved into `arrays` (under
    a fresh key ``s<n>``) and replaced by ``{"__array__": key}``, so the rest is JSON."""
    if isinstance(value, np.ndarray):
        key = f"s{len(arrays)}"
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, dict):
        return {str(k): split_arrays(v, arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [split_arrays(v, arrays) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def join_arrays(value: Any, arrays: Any) -> Any:
    """The inverse of :func:`split_arrays`."""
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return np.asarray(arrays[value["__array__"]])
        return {k: join_arrays(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [join_arrays(v, arrays) for v in value]
    return value


def _copies(variables) -> tuple[list[str], list[Any]]:
    # a copy on the device, not yet on the host: cheap (on TensorFlow a variable's read
    # is a copy-on-write snapshot; on JAX a new buffer, which outlives the ones the next
    # train step donates), so the host transfer can happen while training goes on
    return [v.path for v in variables], [keras.ops.copy(v) for v in variables]


@dataclass(frozen=True)
class Snapshot:
    """A checkpoint's content at one moment (:func:`snapshot`), ready to write while
    training goes on (:func:`write_snapshot`).

    Attributes:
        meta: dict. The JSON part (epoch, recipe, history, state, variable paths).
        arrays: dict of str to arrays. The state's numpy arrays, and copies of the
            model's and optimizer's variables still on the device (numpy once written);
            while the snapshot lives, the device holds one more copy of them.
    """

    meta: dict[str, Any]
    arrays: dict[str, Any]


def snapshot(model: Any, *, epoch: int = 0, stage_index: int = 0, recipe: str = "",
             history: list | None = None, steps_per_epoch: int | None = None,
             state: dict | None = None) -> Snapshot:
    """Copy `model` (and its optimizer, if compiled and built) and the run's state.

    `state` holds JSON values and numpy arrays, in dicts and lists (:func:`split_arrays`).
    """
    model_paths, model_values = _copies(model.variables)
    optimizer = getattr(model, "optimizer", None)
    opt_paths, opt_values = ([], [])
    if optimizer is not None and optimizer.built:
        opt_paths, opt_values = _copies(optimizer.variables)
    meta = {
        "finetunekit_checkpoint": VERSION, "epoch": epoch, "stage_index": stage_index,
        "recipe": recipe, "history": copy.deepcopy(history or []),
        "model_paths": model_paths, "optimizer_paths": opt_paths,
        "backend": keras.backend.backend(), "steps_per_epoch": steps_per_epoch,
    }
    arrays: dict[str, np.ndarray] = {}
    meta["state"] = copy.deepcopy(split_arrays(state or {}, arrays))
    arrays = {key: np.array(value, copy=True) for key, value in arrays.items()}
    arrays.update({f"m{i}": value for i, value in enumerate(model_values)})
    arrays.update({f"o{i}": value for i, value in enumerate(opt_values)})
    return Snapshot(meta, arrays)


def write_snapshot(path: Path, taken: Snapshot) -> Path:
    """Write a :class:`Snapshot` to `path`, atomically (safe on any thread)."""
    arrays = {key: np.asarray(keras.ops.convert_to_numpy(value))
              for key, value in taken.arrays.items()}
    atomic_write(path, lambda handle: np.savez(
        handle, meta=np.array(json.dumps(taken.meta)), **arrays))
    return path


def write_checkpoint(path: Path, model: Any, **content: Any) -> Path:
    """Write `model` (and its optimizer, if compiled and built) to `path`, atomically.

    `content` is :func:`snapshot`'s keywords (epoch, stage_index, recipe, history,
    steps_per_epoch, state).
    """
    return write_snapshot(path, snapshot(model, **content))


def read_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint file.

    Raises:
        PersistenceError: the file is missing, truncated, or not a finetunekit checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise PersistenceError(f"No such checkpoint: '{path}'.")
    if not zipfile.is_zipfile(path):
        raise PersistenceError(
            f"'{path}' is not a finetunekit checkpoint (not a zip archive; it may be "
            "truncated or another format)."
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            if not isinstance(meta, dict) or meta.get("finetunekit_checkpoint") != VERSION:
                raise KeyError("finetunekit_checkpoint")
            _check_meta(meta, path)
            model = [(p, archive[f"m{i}"]) for i, p in enumerate(meta["model_paths"])]
            optimizer = [(p, archive[f"o{i}"]) for i, p in enumerate(meta["optimizer_paths"])]
            state = join_arrays(meta.get("state", {}), archive)
    except PersistenceError:
        raise
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise PersistenceError(
            f"'{printable(path)}' is not a readable finetunekit checkpoint "
            f"({type(exc).__name__}: {printable(exc)})."
        ) from exc
    return Checkpoint(path=path, epoch=int(meta["epoch"]), stage_index=int(meta["stage_index"]),
                      recipe=meta["recipe"], history=meta["history"],
                      steps_per_epoch=meta.get("steps_per_epoch"), model=model,
                      optimizer=optimizer, state=state)


_META_TYPES = {
    "epoch": ("a whole number >= 0", lambda v: type(v) is int and v >= 0),
    "stage_index": ("a whole number >= 0", lambda v: type(v) is int and v >= 0),
    "recipe": ("a string (the recipe as TOML)", lambda v: isinstance(v, str)),
    "history": ("a list of tables (one per epoch)",
                lambda v: isinstance(v, list) and all(isinstance(row, dict) for row in v)),
    "model_paths": ("a list of variable paths (strings)",
                    lambda v: isinstance(v, list) and all(isinstance(p, str) for p in v)),
    "optimizer_paths": ("a list of variable paths (strings)",
                        lambda v: isinstance(v, list) and all(isinstance(p, str) for p in v)),
    "steps_per_epoch": ("a whole number or null",
                        lambda v: v is None or (type(v) is int and v > 0)),
}


def _check_meta(meta: dict[str, Any], path: Path) -> None:
    """Refuse metadata of the wrong shape with the field at fault: a crafted or damaged
    file must not end in a TypeError deep inside the restore."""
    for key, (expected, ok) in _META_TYPES.items():
        if key == "steps_per_epoch" and key not in meta:
            continue
        if key not in meta or not ok(meta[key]):
            received = repr(meta.get(key, "(missing)"))
            raise PersistenceError(
                f"'{printable(path)}': the checkpoint's metadata is malformed: '{key}' should "
                f"be {expected}. Received: {printable(received[:80])}. The file is damaged or "
                "was not written by finetunekit; resume from an older checkpoint (delete this "
                "one) or start the run over.")


def resume_point(run_dir: Path) -> tuple[Checkpoint | None, Recipe]:
    """Where ``resume`` continues a run folder: its newest checkpoint and that
    checkpoint's recipe, or, when it has none yet, (None, its recipe.toml).

    Raises:
        PersistenceError: the folder has neither; or its recipe.toml differs from the
            checkpoint's recipe (a user's edit resume would otherwise silently undo): the
            message names every key that differs.
    """
    run_dir = Path(run_dir)
    beside = run_dir / "recipe.toml"
    if not list_checkpoints(run_dir):
        if beside.is_file():
            return None, Recipe.from_toml(beside)
        latest_checkpoint(run_dir)  # raises: nothing to resume from
    checkpoint = latest_checkpoint(run_dir)
    recipe = Recipe.from_string(checkpoint.recipe, source=str(checkpoint.path))
    if beside.is_file():
        try:
            edited = Recipe.from_toml(beside)
        except Exception as exc:  # an edit that broke the file is an edit too
            raise PersistenceError(
                f"'{printable(beside)}' was changed since checkpoint "
                f"'{printable(checkpoint.path.name)}' was written and no longer reads as a "
                f"recipe ({printable(exc)}). Resume continues the run the checkpoint holds: "
                "restore recipe.toml, or delete it to resume from the checkpoint's recipe."
            ) from exc
        changed = _differences(recipe.to_dict(), edited.to_dict())
        if changed:
            listed = "; ".join(f"{key}: checkpoint {old!r}, recipe.toml {new!r}"
                               for key, old, new in changed[:10])
            raise PersistenceError(
                f"'{printable(beside)}' differs from the recipe of checkpoint "
                f"'{printable(checkpoint.path.name)}' in {len(changed)} key(s): "
                f"{printable(listed)}. Resume continues the run the checkpoint holds and "
                "will not apply or undo an edit silently. Undo the edit to resume; or train "
                "the edited recipe as a new run ('finetunekit run RECIPE --set "
                "save.path=NEW_FOLDER'), or train the saved model further with "
                "'finetunekit retrain'.")
    return checkpoint, recipe


def _differences(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]
                 ) -> list[tuple[str, Any, Any]]:
    missing = "(not set)"
    flat_old = {f"{s}.{k}": v for s, keys in old.items() for k, v in keys.items()}
    flat_new = {f"{s}.{k}": v for s, keys in new.items() for k, v in keys.items()}
    return [(key, flat_old.get(key, missing), flat_new.get(key, missing))
            for key in sorted(set(flat_old) | set(flat_new))
            if flat_old.get(key, missing) != flat_new.get(key, missing)]


def _generic(path: str) -> str:
    # Keras numbers auto-named objects per process (seed_generator_2 in one process,
    # seed_generator_1 in the next); compare paths without those counters.
    return _COUNTER.sub("", path)


def _assign(variables, saved: list[tuple[str, np.ndarray]], what: str, source: Path) -> None:
    paths = [_generic(v.path) for v in variables]
    saved_paths = [_generic(p) for p, _ in saved]
    if paths != saved_paths:
        missing = sorted(set(paths) - set(saved_paths))[:3]
        extra = sorted(set(saved_paths) - set(paths))[:3]
        raise PersistenceError(
            f"Checkpoint '{source}' does not match this {what}: it holds {len(saved)} "
            f"variables, the {what} has {len(paths)} (missing {missing}, unexpected {extra}). "
            "It was written for another recipe (backbone, head or strategy)."
        )
    for variable, (_, value) in zip(variables, saved):
        if tuple(variable.shape) != value.shape:
            raise PersistenceError(
                f"Checkpoint '{source}': variable '{variable.path}' has shape {value.shape}, "
                f"the {what} expects {tuple(variable.shape)}. It was written for another recipe."
            )
        variable.assign(value)


def restore_model(model: Any, checkpoint: Checkpoint) -> None:
    """Put the checkpoint's model variables into `model` (same recipe)."""
    _assign(model.variables, checkpoint.model, "model", checkpoint.path)


def restore_optimizer(model: Any, checkpoint: Checkpoint) -> None:
    """Build the compiled model's optimizer and put the checkpoint's state into it.

    Keras builds an optimizer lazily and, loading state into an unbuilt one, drops it
    with only a warning; building it first makes the restore exact. It is built inside
    its own name scope, as Keras's ``apply`` does, so that a wrapped optimizer's
    variables (``LossScaleOptimizer`` under mixed_float16) get the paths they had when
    the checkpoint was written.
    """
    optimizer = model.optimizer
    if not optimizer.built:
        with keras.name_scope(optimizer.name, caller=optimizer):
            optimizer.build(model.trainable_variables)
    _assign(optimizer.variables, checkpoint.optimizer, "optimizer", checkpoint.path)


def checkpoint_path(run_dir: Path, epoch: int) -> Path:
    """Where the checkpoint after `epoch` epochs goes."""
    return Path(run_dir) / CHECKPOINT_DIR / f"epoch-{epoch:04d}{SUFFIX}"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run folder's checkpoints, oldest first (temporary files ignored)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Checkpoint:
    """The newest checkpoint of a run folder, read.

    Raises:
        PersistenceError: the folder has none.
    """
    found = list_checkpoints(run_dir)
    if not found:
        raise PersistenceError(
            f"No checkpoint in '{printable(Path(run_dir) / CHECKPOINT_DIR)}'. Resume needs a "
            "run folder written by 'finetunekit run' (with a checkpoint, or at least its "
            "recipe.toml to start over from).")
    return read_checkpoint(found[-1])


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints, and stale temporary files."""
    for old in list_checkpoints(run_dir)[:-keep] if keep else list_checkpoints(run_dir):
        old.unlink(missing_ok=True)
    folder = Path(run_dir) / CHECKPOINT_DIR
    if folder.is_dir():
        for stale in folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)


def refuse_finished(run_dir: Path, checkpoint: Checkpoint | None, epochs: int) -> None:
    """Refuse to resume a run that is over (every epoch trained, or stopped early, and its
    model saved); warn that a folder without a checkpoint starts over from its recipe."""
    stopped = checkpoint.state.get("stopped") if checkpoint is not None else None
    done = checkpoint is None or checkpoint.epoch >= epochs or stopped
    if done and any(Path(run_dir).glob("model.*")):
        trained = (f"stopped at epoch {stopped['epoch']} ({stopped['reason']})" if stopped
                   else f"trained all {epochs} epoch(s)")
        raise PersistenceError(
            f"Run '{printable(run_dir)}' is finished: it {trained} and saved its model. "
            "Nothing to resume; use 'finetunekit retrain' to train it further.")
    if checkpoint is None:
        logger.warning(
            "Run folder '%s' has its recipe.toml but no checkpoint (the run stopped before its "
            "first epoch ended): starting the run over from that recipe.", printable(run_dir))
