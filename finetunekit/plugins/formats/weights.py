"""Weights only (``.weights.h5``): the recipe rebuilds the architecture on load."""

from __future__ import annotations

import h5py

from finetunekit.core.components import Format
from finetunekit.core.errors import PersistenceError
from finetunekit.core.manager import hookimpl


def save_weights(model, path, run=None) -> None:
    model.save_weights(str(path))


def load_weights(path, safe_mode=True, template=None):
    if not h5py.is_hdf5(str(path)):
        raise PersistenceError(f"'{path}' is not an HDF5 weights file; it may be truncated.")
    model = template()
    try:
        model.load_weights(str(path))
    except Exception as exc:
        raise PersistenceError(
            f"Weights '{path}' do not fit the recipe's model: {type(exc).__name__}: {exc}. "
            "Use the recipe they were trained with."
        ) from exc
    return model


@hookimpl
def finetunekit_register_formats(register):
    register(Format(
        name="weights", suffix=".weights.h5", save=save_weights, load=load_weights,
        description="Weights only; loading needs the recipe (the run folder's recipe.toml).",
    ))
