"""Built-in persistence format: the native ``.keras`` file."""

from __future__ import annotations

import zipfile

import keras

from finetunekit.core.components import Format
from finetunekit.core.errors import PersistenceError
from finetunekit.core.plugins import hookimpl


def save_keras(model, path) -> None:
    model.save(str(path))


def load_keras(path, safe_mode: bool = True):
    if not zipfile.is_zipfile(path):
        raise PersistenceError(
            f"'{path}' is not a .keras file (a .keras file is a zip archive); it may be "
            "truncated or another format. Re-save it, or load it with the format it was "
            "written in."
        )
    try:
        return keras.saving.load_model(str(path), safe_mode=safe_mode)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "lambda" in str(exc).lower():
            raise PersistenceError(
                f"'{path}' holds Python code (a Lambda layer), which safe loading refuses: "
                "it could run anything. Load it only if you trust its source, with "
                "--unsafe (safe_mode=False)."
            ) from exc
        raise PersistenceError(f"Could not load '{path}': {exc}") from exc


@hookimpl
def finetunekit_register_formats(register):
    register(Format(
        name="keras", suffix=".keras", save=save_keras, load=load_keras,
        description="Native Keras file: architecture, weights, optimizer state, trainable flags.",
    ))
