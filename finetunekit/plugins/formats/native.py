"""The native ``.keras`` format: architecture, weights, optimizer state, trainable flags.

A model finetunekit builds holds core Keras layers only, so the file loads with
``keras.saving.load_model`` where finetunekit is not installed. Its compile information
names Keras classes only too: a metric or loss that subclasses a Keras one (the soft-label
``DominantBinaryAccuracy``) is written as that Keras class, with its config
(:func:`plain_keras_compile`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import warnings
import zipfile
from collections.abc import Iterator

import keras

from finetunekit.core.components import Format
from finetunekit.core.errors import PersistenceError, printable
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
    if "keras_hub" in text and importlib.util.find_spec("keras_hub") is None:
        return PersistenceError(
            f"Could not load '{printable(path)}': it holds KerasHub layers, and keras-hub is not "
            f"installed. Install it with: pip install \"finetunekit[hub]\" "
            f"({_first_sentence(exc)})")
    if re.search(r"['\"][\w.-]+>[\w.]+['\"]", text):  # 'package>Class': a plugin's class
        missing = missing_class(path, exc)
        if missing is not None:
            return missing
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
