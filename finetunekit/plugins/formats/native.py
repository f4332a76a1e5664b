"""The native ``.keras`` format: architecture, weights, optimizer state, trainable flags."""

from __future__ import annotations

import re
import warnings
import zipfile

import keras

from finetunekit.core.components import Format
from finetunekit.core.errors import PersistenceError, printable
from finetunekit.core.manager import hookimpl


def save_keras(model, path, run=None) -> None:
    model.save(str(path))


def refuse_lambda(path, exc: Exception) -> PersistenceError:
    """The error for a file that holds Python code and was loaded safely."""
    return PersistenceError(
        f"'{printable(path)}' holds Python code (a Lambda layer), which safe loading refuses: "
        "it could run anything. Load it only if you trust its source, with --unsafe "
        f"(safe_mode=False). ({_first_sentence(exc)})"
    )


# What Keras 3 says when a config names something it will not build (keras/src/saving/
# serialization_lib.py): a non-modelling API, a class outside Keras, a name it cannot find.
_FOREIGN = re.compile(
    r"Cannot deserialize `(?P<api>[^`]+)`|Could not deserialize '(?P<saveable>[^']+)'"
    r"|Could not locate (?:class|function) '(?P<missing>[^']+)'"
    r"|Could not deserialize (?:class|function) '(?P<module_of>[^']+)' because its parent module")
_MODULE = re.compile(r"'module': '([^']*)', 'class_name': '([^']*)'")


def _first_sentence(exc: Exception) -> str:
    text = str(exc).split("Full object config", 1)[0].strip()
    text = text.split("\n", 1)[0].split(". ", 1)[0].rstrip(".")
    return printable(text[:200])


def explain_load_error(path, exc: Exception, what: str) -> PersistenceError:
    """The error for a model file Keras would not load, saying what is wrong with the file.

    A file whose config names Python code (a lambda) is refused as such; one that names a
    callable that is not part of Keras (``os.system``, ``keras.models.load_model``, an
    unregistered custom class) is refused naming it. Keras refuses those before calling
    anything, so nothing from the file ran.
    """
    text = str(exc)
    if re.search(r"Requested the deserialization of a[^.]*lambda", text, re.IGNORECASE):
        return refuse_lambda(path, exc)
    found = _FOREIGN.search(text)
    if found:
        name = next(group for group in found.groups() if group)
        module = _MODULE.search(text.split("Full object config", 1)[-1])
        if module and "." not in name:
            name = f"{module.group(1)}.{module.group(2)}"
        return PersistenceError(
            f"'{printable(path)}' is not a model finetunekit can load: its config names "
            f"'{printable(name)}', which is not a Keras layer, model or function (a crafted or "
            "damaged file, or a model with custom objects whose plugin is not installed). "
            "Keras refused it before running anything from the file. Load only files you "
            f"trust; install the plugin that defines the object if it is yours. "
            f"({_first_sentence(exc)})")
    return PersistenceError(
        f"Could not load '{printable(path)}' as {what}: {type(exc).__name__}: "
        f"{_first_sentence(exc)}")


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
        raise explain_load_error(path, exc, "a .keras model") from exc


@hookimpl
def finetunekit_register_formats(register):
    register(Format(
        name="keras", suffix=".keras", save=save_keras, load=load_keras,
        description="Native Keras file: architecture, weights, optimizer state, trainable flags.",
    ))
