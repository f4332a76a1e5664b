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

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from finetunekit.core.errors import PersistenceError
from finetunekit.core.run_folder import CHECKPOINT_DIR, atomic_write

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


def _values(variables) -> tuple[list[str], list[np.ndarray]]:
    return [v.path for v in variables], [np.asarray(keras.ops.convert_to_numpy(v)) for v in variables]


def write_checkpoint(path: Path, model: Any, *, epoch: int = 0, stage_index: int = 0,
                     recipe: str = "", history: list | None = None,
                     steps_per_epoch: int | None = None, state: dict | None = None) -> Path:
    """Write `model` (and its optimizer, if compiled and built) to `path`, atomically.

    `state` holds JSON values and numpy arrays, in dicts and lists (:func:`split_arrays`).
    """
    model_paths, model_values = _values(model.variables)
    optimizer = getattr(model, "optimizer", None)
    opt_paths, opt_values = ([], [])
    if optimizer is not None and optimizer.built:
        opt_paths, opt_values = _values(optimizer.variables)
    meta = {
        "finetunekit_checkpoint": VERSION, "epoch": epoch, "stage_index": stage_index,
        "recipe": recipe, "history": history or [], "model_paths": model_paths,
        "optimizer_paths": opt_paths, "backend": keras.backend.backend(),
        "steps_per_epoch": steps_per_epoch,
    }
    arrays: dict[str, np.ndarray] = {}
    meta["state"] = split_arrays(state or {}, arrays)
    arrays.update({f"m{i}": value for i, value in enumerate(model_values)})
    arrays.update({f"o{i}": value for i, value in enumerate(opt_values)})
    atomic_write(path, lambda handle: np.savez(handle, meta=np.array(json.dumps(meta)), **arrays))
    return path


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
            if meta.get("finetunekit_checkpoint") != VERSION:
                raise KeyError("finetunekit_checkpoint")
            model = [(p, archive[f"m{i}"]) for i, p in enumerate(meta["model_paths"])]
            optimizer = [(p, archive[f"o{i}"]) for i, p in enumerate(meta["optimizer_paths"])]
            state = join_arrays(meta.get("state", {}), archive)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise PersistenceError(
            f"'{path}' is not a readable finetunekit checkpoint ({type(exc).__name__}: {exc})."
        ) from exc
    return Checkpoint(path=path, epoch=int(meta["epoch"]), stage_index=int(meta["stage_index"]),
                      recipe=meta["recipe"], history=meta["history"],
                      steps_per_epoch=meta.get("steps_per_epoch"), model=model,
                      optimizer=optimizer, state=state)


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
            f"No checkpoint in '{Path(run_dir) / CHECKPOINT_DIR}'. Resume needs a run folder "
            "written by 'finetunekit run' with save.keep_checkpoints > 0.")
    return read_checkpoint(found[-1])


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints, and stale temporary files."""
    for old in list_checkpoints(run_dir)[:-keep] if keep else list_checkpoints(run_dir):
        old.unlink(missing_ok=True)
    folder = Path(run_dir) / CHECKPOINT_DIR
    if folder.is_dir():
        for stale in folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
