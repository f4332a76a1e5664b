"""Saving models built on KerasHub backbones: what keras-hub 0.32's layers need so that
a saved model loads back with the same predictions, and the save-time check that it does.

The ``keras_hub`` backbone plugin calls these from its hooks: :func:`fix_layer_configs`
and :func:`prepare_to_save` before a model is written (``finetunekit_export_model``),
:func:`check_round_trip` on the written file (``finetunekit_check_saved_model``).

The fixes go into the file itself (its layer configs and variables), so a saved model
loads with plain ``keras.saving.load_model`` and keras-hub, without finetunekit. The
config fixes wrap each KerasHub layer class's ``get_config`` (and ``get_build_config``)
once per process: idempotent, the same for every engine, and they only change what a
layer writes when serialised, so engines in one process cannot see each other through
them.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np

from finetunekit.core.errors import PersistenceError
from finetunekit.plugins.backbones.hub_families import BEFORE_SAVE, CONFIG_SOURCES


_LAYER_KEYS = frozenset({"name", "trainable", "dtype"})
_PLAIN = (int, float, str, bool, type(None), tuple, list)


def _fixed_get_config(layer_class: type) -> Any:
    accepted = set(inspect.signature(layer_class.__init__).parameters) - {"self", "kwargs"}
    original = layer_class.get_config

    def get_config(self):
        # a layer class kept as an attribute (Swin's PatchEmbedding(norm_layer=
        # LayerNormalization), SwinTransformerStage(downsample=PatchMerging)) goes to
        # serialize_keras_object, which fails on a class: while the original runs, it is
        # replaced by a function of the same module and name, which serialises as a
        # reference that deserialize_keras_object turns back into the class
        classes = {key: value for key, value in vars(self).items() if isinstance(value, type)}
        self.__dict__.update({key: _stand_in(value) for key, value in classes.items()})
        try:
            config = original(self)
        finally:
            self.__dict__.update(classes)
        by_name = {value.__name__: value for value in classes.values()}
        for key, value in config.items():
            if (isinstance(value, dict) and value.get("class_name") == "function"
                    and value.get("module") == "builtins" and value.get("config") in by_name):
                config[key] = _reference(by_name[value["config"]])
        for key in set(config) - accepted - _LAYER_KEYS:
            del config[key]
        known = CONFIG_SOURCES.get(layer_class.__name__, {})
        for key in accepted - set(config):
            if key in known:  # kept under another name, or by a sublayer (MiT)
                config[key] = known[key](self)
                continue
            value = getattr(self, key, None)
            if hasattr(self, key) and isinstance(value, _PLAIN):
                config[key] = value
        return config

    return get_config


def _no_build_config(self) -> None:
    # A layer without a build() of its own (Swin's PatchEmbedding and stages) creates its
    # sublayers' variables when its call() is traced. Keras rebuilds a layer that has a
    # build config with Layer.build_from_config, whose default build() only marks it
    # built, so the functional model's call on load skips the tracing and the weights
    # find no variables. Without a build config, the call on load builds it.
    return None


def _stand_in(value: type) -> Any:
    """A function named as the class `value`: Keras serialises it (as a function of no
    known module) where it cannot serialise the class."""
    def stand_in(*args: Any, **kwargs: Any) -> Any:
        return value(*args, **kwargs)

    stand_in.__name__ = stand_in.__qualname__ = value.__name__
    return stand_in


def _reference(value: type) -> dict[str, Any]:
    """The class `value` in a layer's config as ``deserialize_keras_object`` reads a
    function: that module's attribute of that name, i.e. the class itself (in any
    process, without this plugin)."""
    public = getattr(keras.layers, value.__name__, None) is value
    module = "keras.layers" if public else value.__module__
    return {"module": module, "class_name": "function", "config": value.__name__,
            "registered_name": value.__name__}


def fix_layer_configs(model: Any) -> None:
    """Make the KerasHub layers of `model` serialisable on their own.

    In keras-hub 0.32 some layers' ``get_config`` does not match their constructor:
    ``ViTPatchingAndEmbedding`` writes ``num_patches`` and ``num_positions``, which the
    constructor refuses, and leaves out ``use_patch_bias``; ``ViTEncoderBlock`` writes
    ``key_dim``; Swin's ``PatchEmbedding`` and ``SwinTransformerStage`` hold layer classes,
    which ``serialize_keras_object`` refuses; MiT's ``HierarchicalTransformerEncoder``
    leaves out ``sr_ratio`` (:data:`~finetunekit.plugins.backbones.hub_families.CONFIG_SOURCES`).
    Inside a backbone that never shows (the backbone rebuilds them from its own config),
    but the base here holds the layers themselves. Each KerasHub layer class's
    ``get_config`` is wrapped once per process to keep exactly the constructor's
    arguments, and a class without a ``build()`` of its own writes no build config
    (:func:`_no_build_config`), so the saved model loads with plain
    ``keras.saving.load_model``.
    """
    for layer in model._flatten_layers(include_self=True, recursive=True):
        layer_class = type(layer)
        if (not layer_class.__module__.startswith("keras_hub.")
                or isinstance(layer, keras.Model)
                or layer_class.__dict__.get("_finetunekit_config_fixed", False)):
            continue
        layer_class.get_config = _fixed_get_config(layer_class)
        if getattr(layer_class.build, "_is_default", False):  # Keras's own test
            layer_class.get_build_config = _no_build_config
        layer_class._finetunekit_config_fixed = True


def prepare_to_save(model: Any) -> None:
    """Bring each KerasHub layer of `model` that saves something other than what it
    computes with up to date (:data:`~finetunekit.plugins.backbones.hub_families.BEFORE_SAVE`:
    DINOv2's position embeddings)."""
    for layer in model._flatten_layers(include_self=True, recursive=True):
        before_save = BEFORE_SAVE.get(type(layer).__name__)
        if before_save is not None and layer.built:
            before_save(layer)


PROBE_IMAGES = 4
"""How many images the save-time check predicts on (random pixels, seeded)."""

TOLERANCE = {"float32": 1e-4, "float64": 1e-4}
"""Largest difference (absolute, and relative) the save-time check accepts between the
model written and the model loaded back, by compute dtype; 1e-2 for other (16-bit)
dtypes. The same layers and weights compute the same numbers: a loaded model that
differs by more has lost some state in the file (a MiT's sequence reduction, a DINOv2's
trained position embeddings, in keras-hub 0.32 without the fixes here)."""


def has_keras_hub_layers(model: Any) -> bool:
    """Whether `model` holds a KerasHub layer (at any depth)."""
    return "keras_hub" in sys.modules and any(
        type(layer).__module__.startswith("keras_hub.")
        for layer in model._flatten_layers(include_self=True, recursive=True))


def _probe_images(model: Any) -> Any:
    # random pixels of the model's input: every layer computes on them, no data needed
    if len(model.inputs) != 1 or None in tuple(model.inputs[0].shape[1:]):
        return None
    shape = (PROBE_IMAGES, *model.inputs[0].shape[1:])
    pixels = np.random.default_rng(0).integers(0, 256, shape)
    return pixels.astype(model.inputs[0].dtype)


def _predict(model: Any, images: Any) -> list[Any]:
    outputs = model(images, training=False)
    return [np.asarray(keras.ops.convert_to_numpy(out), dtype="float64")
            for out in keras.tree.flatten(outputs)]


def _instead(format: Any) -> str:
    others = " or ".join(f"'{name}'" for name in ("keras", "checkpoint") if name != format.name)
    return (f"Save it in format {others} instead (docs/backbones.md lists what each "
            "KerasHub family saves in), and report the family if it is new there.")


def check_round_trip(model: Any, path: Any, format: Any, reload: Any) -> None:
    """Refuse a written model holding KerasHub layers unless it loads back and predicts
    as the model written, within :data:`TOLERANCE`, on :data:`PROBE_IMAGES` images.

    KerasHub layers save themselves with their own code; a gap in it (a constructor
    argument left out of a config, a variable saved only on a condition) makes a file
    that loads and predicts differently, silently. The check costs one load and two
    predictions on a few images.

    Raises:
        PersistenceError: the file does not load back, or predicts differently.
    """
    if not has_keras_hub_layers(model):
        return
    images = _probe_images(model)
    if images is None:
        return
    refused = f"Refusing to save '{path}' (format '{format.name}'): "
    kept = ("The previous file there is kept as it was." if Path(path).exists()
            else "Nothing was written.")
    try:
        loaded = reload()
    except Exception as exc:
        raise PersistenceError(
            f"{refused}the model holds KerasHub layers, and the file written does not load "
            f"back ({type(exc).__name__}: {str(exc)[:300]}). {kept} {_instead(format)}"
        ) from exc
    tolerance = TOLERANCE.get(model.dtype_policy.compute_dtype, 1e-2)
    expected, got = _predict(model, images), _predict(loaded, images)
    worst = max((float(np.max(np.abs(a - b))) for a, b in zip(expected, got)
                 if a.shape == b.shape), default=0.0)
    shapes_differ = [a.shape for a in expected] != [b.shape for b in got]
    if shapes_differ or not all(np.allclose(b, a, rtol=tolerance, atol=tolerance)
                                for a, b in zip(expected, got)):
        found = ("outputs of other shapes" if shapes_differ
                 else f"predictions differing by up to {worst:.3g}")
        raise PersistenceError(
            f"{refused}loaded back, the model gives {found} on {PROBE_IMAGES} test images "
            f"(tolerance {tolerance:g}): some KerasHub layer does not save all of its "
            f"state. {kept} {_instead(format)}")
