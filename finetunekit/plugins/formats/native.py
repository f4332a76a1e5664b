"""The native ``.keras`` format: architecture, weights, optimizer state, trainable flags."""

from __future__ import annotations

import importlib.util
import warnings
import zipfile

import keras

from finetunekit.core.components import Format
from finetunekit.core.errors import PersistenceError
from finetunekit.core.manager import hookimpl


def save_keras(model, path, run=None) -> None:
    model.save(str(path))


def refuse_lambda(path, exc: Exception) -> PersistenceError:
    """The error for a file that holds Python code and was loaded safely."""
    return PersistenceError(
        f"'{path}' holds Python code (a Lambda layer), which safe loading refuses: it could "
        "run anything. Load it only if you trust its source, with --unsafe "
        f"(safe_mode=False). ({exc})"
    )


def load_keras(path, safe_mode=True, template=None):
    if path.is_dir():
        raise PersistenceError(
            f"'{path}' is a folder (a SavedModel?), not a .keras file. Load it with "
            "format='savedmodel', or point at the .keras file."
        )
    if not zipfile.is_zipfile(path):
        raise PersistenceError(
            f"'{path}' is not a .keras file (a .keras file is a zip archive); it may be "
            "truncated or another format. Re-save it, or load it with the format it was "
            "written in."
        )
    try:
        with warnings.catch_warnings():
            # Keras 3.15 warns about the functional model's internal bookkeeping lists
            # ("Skipping nested container ... _operations_by_depth"); they hold no
            # weights, and round trips are bit-identical (tests/plugins/formats/test_formats.py).
            warnings.filterwarnings("ignore", message="Skipping nested container.*_operations_by_depth")
            return keras.saving.load_model(str(path), safe_mode=safe_mode)
    except Exception as exc:
        if "safe_mode" in str(exc) or "lambda" in str(exc).lower():
            raise refuse_lambda(path, exc) from exc
        if "keras_hub" in str(exc) and importlib.util.find_spec("keras_hub") is None:
            raise PersistenceError(
                f"Could not load '{path}': it holds KerasHub layers, and keras-hub is not "
                f"installed. Install it with: pip install \"finetunekit[hub]\" "
                f"({type(exc).__name__}: {str(exc)[:300]})") from exc
        raise PersistenceError(f"Could not load '{path}': {type(exc).__name__}: {exc}") from exc


@hookimpl
def finetunekit_register_formats(register):
    register(Format(
        name="keras", suffix=".keras", save=save_keras, load=load_keras,
        description="Native Keras file: architecture, weights, optimizer state, trainable flags.",
    ))
