"""The legacy Keras H5 format the seed uses (``model.save("my_h5_model.h5")``).

Keras 3 writes it through its legacy path: architecture, weights and the optimizer's
state (Keras 3.15; tests/plugins/formats/test_formats.py checks it).
"""

from __future__ import annotations

import h5py
import keras

from finetunekit.core.components import Format
from finetunekit.core.errors import PersistenceError
from finetunekit.core.manager import hookimpl
from finetunekit.plugins.formats.native import explain_load_error, plain_keras_compile


def save_h5(model, path, run=None) -> None:
    # Keras's legacy H5 writer pops "optimizer" out of the model's own compile config
    # (keras/src/legacy/saving/saving_utils.py), so a later .keras save of the same
    # model would record no optimizer and reload with a default one. Restore it.
    compile_config = getattr(model, "_compile_config", None)
    kept = dict(compile_config.config) if compile_config is not None else None
    try:
        with plain_keras_compile(model):
            model.save(str(path))
    finally:
        if kept is not None:
            compile_config.config = kept


def load_h5(path, safe_mode=True, template=None):
    if not h5py.is_hdf5(str(path)):
        raise PersistenceError(
            f"'{path}' is not an HDF5 file; it may be truncated or another format."
        )
    try:
        return keras.saving.load_model(str(path), safe_mode=safe_mode)
    except Exception as exc:
        error = explain_load_error(path, exc, "a Keras H5 model")
        if str(error).startswith("Could not load"):
            error = PersistenceError(
                f"{error} If it holds only weights, use format 'weights' with the recipe.")
        raise error from exc


@hookimpl
def finetunekit_register_formats(register):
    register(Format(
        name="h5", suffix=".h5", save=save_h5, load=load_h5,
        description="Legacy Keras H5 (the seed's format): architecture, weights, optimizer state.",
    ))
