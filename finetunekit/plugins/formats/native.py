"""The native ``.keras`` format: architecture, weights, optimizer state, trainable flags.

A model finetunekit builds holds core Keras layers only, so the file loads with
``keras.saving.load_model`` where finetunekit is not installed. Its compile information
names Keras classes only too: a metric or loss that subclasses a Keras one (the soft-label
``DominantBinaryAccuracy``) is written as that Keras class, with its config
(:func:`plain_keras_compile`).
"""

from __future__ import annotations

import contextlib
import re
import warnings
import zipfile
from collections.abc import Iterator

import keras

from finetunekit.core.components import Format
from finetunekit.core.errors import PersistenceError
from finetunekit.core.manager import hookimpl


def save_keras(model, path, run=None) -> None:
    with plain_keras_compile(model):
        model.save(str(path))


def _keras_class(obj):
    """`obj`, or a Keras object of its nearest Keras base class with its config, if its
    class comes from outside Keras (a subclass of a Keras metric or loss)."""
    cls = type(obj)
    if cls.__module__.startswith("keras") or not hasattr(obj, "get_config"):
        return obj
    for base in cls.__mro__[1:]:
        if base.__module__.startswith("keras.") and hasattr(base, "from_config"):
            try:
                return base.from_config(obj.get_config())
            except Exception:  # a config the base does not take: keep the original
                return obj
    return obj


@contextlib.contextmanager
def plain_keras_compile(model) -> Iterator[None]:
    """Within the block, the model's compile information holds Keras classes only
    (metrics and losses that subclass a Keras class are replaced by that class), so a
    saved file loads in plain Keras; restored afterwards."""
    config = getattr(getattr(model, "_compile_config", None), "config", None)
    if config is None:
        yield
        return
    kept = dict(config)
    for key in ("loss", "metrics", "weighted_metrics"):
        value = config.get(key)
        if isinstance(value, (list, tuple)):
            config[key] = type(value)(_keras_class(item) for item in value)
        elif isinstance(value, dict):
            config[key] = {name: _keras_class(item) for name, item in value.items()}
        elif value is not None:
            config[key] = _keras_class(value)
    try:
        yield
    finally:
        config.clear()
        config.update(kept)


def missing_class(path, exc: Exception) -> PersistenceError | None:
    """The error for a file naming a class that no imported package registered (a
    plugin's layer, its package not installed), or None if `exc` is not that."""
    text = str(exc)
    if not any(sign in text for sign in ("Could not locate", "could not be deserialized",
                                         "Unknown layer", "Unknown object")):
        return None
    # the outer model's "could not be deserialized" wraps the inner "Could not locate":
    # the name to report is a registered one, "package>Class"
    registered = [n for n in re.findall(r"registered_name['\"]?: ['\"]([^'\"]+)", text) if ">" in n]
    located = re.findall(r"(?:Could not locate (?:class|function)|Unknown \w+:) '([^']+)'", text)
    name = (registered or located or ["a custom class"])[0]
    package = name.split(">")[0] if ">" in name else None
    fix = (f"Install the package that provides it (pip install {package}; the Python "
           f"package that registers '{package}>...' classes), then load again."
           if package else "Install the plugin package that provides it, then load again.")
    return PersistenceError(
        f"'{path}' holds '{name}', which no installed package registered, so Keras cannot "
        f"rebuild it. {fix} ({type(exc).__name__}: {text[:300]})")


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
        missing = missing_class(path, exc)
        if missing is not None:
            raise missing from exc
        raise PersistenceError(f"Could not load '{path}': {type(exc).__name__}: {exc}") from exc


@hookimpl
def finetunekit_register_formats(register):
    register(Format(
        name="keras", suffix=".keras", save=save_keras, load=load_keras,
        description="Native Keras file: architecture, weights, optimizer state, trainable flags.",
    ))
