"""``keras_hub``: image backbones from KerasHub presets (``pip install "finetunekit[hub]"``).

A recipe names a preset, by name (downloaded once by KerasHub, from Kaggle or Hugging
Face) or as a local preset folder (``save_to_preset`` writes one)::

    [backbone]
    name = "keras_hub"
    preset = "vit_base_patch16_224_imagenet"    # or "/data/presets/vit_b16"
    weights = "imagenet"                        # the preset's weights; "none": random
    input_shape = [224, 224, 3]

The base finetunekit trains is a plain Keras functional model rebuilt from the preset's
backbone, reusing its layers, so that its top-level layers are the units strategies
freeze (finetunekit freezes top-level layers):

* its input takes uint8 pixels and a ``keras.layers.Rescaling`` layer (``rescaling``)
  applies the preset's image converter (``scale`` and ``offset``), as EfficientNet
  normalises inside itself in keras.applications; a core Keras layer, so the saved
  model needs nothing from finetunekit;
* a transformer's encoder is unrolled into its layers (ViT's ``transformer_block_1`` ...,
  DINOv2's ``layers_0`` ...; CLIP, SigLIP and Swin keep theirs at the top level): one
  block per transformer layer (a Swin or MiT stage), final LayerNorm with the last;
* a CNN (ResNet, ...) keeps its flat layers, grouped into its stages (``stack0`` ...).

:mod:`finetunekit.plugins.backbones.hub_families` holds what is known per family; any
other KerasHub image backbone keeps its own top-level layers, each a block of its own.

keras-hub is imported only when a recipe uses this backbone, so finetunekit works without
it; the saved model needs keras-hub to load (its layers are KerasHub classes).
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

from finetunekit.core.components import Backbone
from finetunekit.core.errors import PersistenceError, RecipeError, WeightsError, did_you_mean
from finetunekit.core.manager import hookimpl
from finetunekit.core.params import Param
from finetunekit.plugins.backbones.download import (
    DEFAULT_TIMEOUT,
    HOST_VARIABLE,
    _socket_timeout,
    download_host,
    probe,
)
from finetunekit.plugins.backbones.hub_families import (
    BLOCK_CLASSES,
    BEFORE_SAVE,
    BLOCK_PATTERNS,
    CONFIG_SOURCES,
    feature_map,
    on_input_grid,
    unrolled,
    vision_tower,
)
from finetunekit.plugins.strategies.freezing import group_blocks

INSTALL = 'pip install "finetunekit[hub]"'
"""The command that installs keras-hub beside finetunekit."""

HOSTS = {"kaggle": ("www.kaggle.com", 443), "hf": ("huggingface.co", 443)}
"""Where a preset handle's scheme downloads from, probed before KerasHub downloads
(unless ``FINETUNEKIT_WEIGHTS_HOST`` names the proxy the download goes through)."""



def require_keras_hub() -> Any:
    """Import keras_hub, or say how to install it.

    Raises:
        RecipeError: keras-hub is not installed.
    """
    try:
        import keras_hub
    except ImportError as exc:
        raise RecipeError(
            f"Backbone 'keras_hub' needs the keras-hub package, which is not installed "
            f"({exc}). Install it with: {INSTALL}"
        ) from exc
    return keras_hub


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
    ``key_dim``. Inside a ``ViTBackbone`` that never shows (the backbone rebuilds them from
    its own config), but the base here holds the layers themselves. Each such class's
    ``get_config`` is wrapped once per process to keep exactly the constructor's
    arguments, so the saved model loads with plain ``keras.saving.load_model``.
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


# -------------------------------------------------------------------------
# presets: a folder, or a name KerasHub downloads (bounded like ImageNet weights)
# -------------------------------------------------------------------------


def _kagglehub_cached(handle: str) -> bool:
    # kagglehub keeps kaggle://owner/model/framework/variation/version under
    # $KAGGLEHUB_CACHE/models/owner/model/framework/variation/version
    root = Path(os.environ.get("KAGGLEHUB_CACHE") or Path.home() / ".cache" / "kagglehub")
    return (root / "models" / handle.removeprefix("kaggle://")).is_dir()


def _offline_message(preset: str, reason: str) -> str:
    return (
        f"Could not download KerasHub preset '{preset}': {reason}. Offline, get it on a "
        "connected machine (keras_hub.models.Backbone.from_preset(name) and "
        "keras_hub.layers.ImageConverter.from_preset(name), then save_to_preset(folder) on "
        "each), copy the folder here and set backbone.preset = \"/path/to/folder\" "
        "(docs/backbones.md)."
    )


def resolve_preset(keras_hub: Any, preset: str, timeout: float) -> str:
    """The preset's local folder, or its name once its download host answers.

    Raises:
        RecipeError: a path that is not a folder, or an unknown preset name.
        WeightsError: the download host does not answer within `timeout` seconds.
    """
    path = Path(preset).expanduser()
    if path.is_dir():
        return str(path)
    if os.sep in preset or preset.startswith((".", "~")):
        raise RecipeError(
            f"'backbone.preset' looks like a folder, and there is no folder there. "
            f"Received: backbone.preset={preset!r}. Give a KerasHub preset folder (one "
            "with config.json) or a preset name.")
    known = keras_hub.models.Backbone.presets
    if "://" in preset:
        handle = preset
    elif preset in known:
        handle = known[preset].get("kaggle_handle", "")
    else:
        raise RecipeError(
            f"'backbone.preset' is neither a folder nor a KerasHub preset name. Received: "
            f"backbone.preset={preset!r}.{did_you_mean(preset, list(known))} "
            "keras_hub.models.Backbone.presets lists the names.")
    host = HOSTS.get(handle.split("://", 1)[0])
    if host is not None and os.environ.get(HOST_VARIABLE, "").strip():
        host = download_host()  # the proxy, as for ImageNet weights
    if host is not None and not (handle.startswith("kaggle://") and _kagglehub_cached(handle)):
        reason = probe(host, timeout)
        if reason is not None:
            raise WeightsError(_offline_message(preset, reason))
    return preset


def load_preset(keras_hub: Any, source: str, load_weights: bool, timeout: float) -> tuple[Any, Any]:
    """The preset's backbone and image converter (None if it has none)."""
    try:
        with _socket_timeout(timeout):
            hub = keras_hub.models.Backbone.from_preset(source, load_weights=load_weights)
            try:
                converter = keras_hub.layers.ImageConverter.from_preset(source)
            except (FileNotFoundError, ValueError):
                converter = None  # a bare backbone preset: pixels pass as floats
    except OSError as exc:
        raise WeightsError(_offline_message(source, str(exc))) from exc
    return hub, converter


# -------------------------------------------------------------------------
# the base: uint8 in, the converter's rescaling, the backbone's layers as top-level layers
# -------------------------------------------------------------------------


def rescaling(converter: Any) -> keras.layers.Rescaling:
    """A core Keras layer doing what the image converter's scale and offset do."""
    scale = getattr(converter, "scale", None)
    offset = getattr(converter, "offset", None)
    return keras.layers.Rescaling(1.0 if scale is None else scale,
                                  0.0 if offset is None else offset, name="rescaling")


def as_base(hub: Any, input_shape: tuple[int, ...], converter: Any = None,
            name: str | None = None) -> keras.Model:
    """Rebuild a KerasHub backbone as a functional model finetunekit can freeze by parts.

    The layers are the backbone's own (weights shared): its functional graph is run again
    from a uint8 input and the converter's rescaling, with each encoder that hides its
    transformer blocks (:data:`~finetunekit.plugins.backbones.hub_families.UNROLL`)
    called block by block. A CLIP or SigLIP backbone gives its vision tower; a Swin's
    tokens come out as their grid (:func:`~finetunekit.plugins.backbones.hub_families.feature_map`).

    Raises:
        RecipeError: the backbone takes a fixed input size other than `input_shape`.
    """
    hub = on_input_grid(vision_tower(hub))
    fixed = tuple(hub.input_shape[1:])
    if any(want is not None and want != got for want, got in zip(fixed, input_shape)):
        raise RecipeError(
            f"This KerasHub backbone takes inputs of shape {list(fixed)} (its position "
            f"embedding is built for that size). Received: backbone.input_shape="
            f"{list(input_shape)}. Set backbone.input_shape = {list(fixed)}.")
    images = keras.Input(shape=tuple(input_shape), dtype="uint8", name="images")
    x = rescaling(converter)(images)
    calls = unrolled(hub)
    # Keras's clone_model does this, but only from an Input: reuse every operation
    outputs = hub._run_through_graph(x, operation_fn=lambda op: calls.get(id(op), op))
    base = keras.Model(images, feature_map(hub, outputs), name=name or hub.name)
    fix_layer_configs(base)
    return base


def hub_blocks(base: Any) -> list[list[str]]:
    """Top-level layers grouped into blocks: each layer of a class in
    :data:`~finetunekit.plugins.backbones.hub_families.BLOCK_CLASSES` starts one, else
    the first of :data:`BLOCK_PATTERNS` that fits two layers groups them."""
    names = [layer.name for layer in base.layers]
    starts = [layer.name for layer in base.layers if type(layer).__name__ in BLOCK_CLASSES]
    if len(starts) >= 2:
        return group_blocks(names, "^(" + "|".join(re.escape(n) for n in starts) + ")$")
    for pattern in BLOCK_PATTERNS:
        if sum(bool(re.match(pattern, name)) for name in names) >= 2:
            return group_blocks(names, pattern)
    return group_blocks(names, None)


def build_keras_hub(input_shape, weights, preset: str,
                    download_timeout: float = DEFAULT_TIMEOUT) -> keras.Model:
    """Build the base from a preset; ``weights = "imagenet"`` loads the preset's weights."""
    keras_hub = require_keras_hub()
    source = resolve_preset(keras_hub, preset, download_timeout)
    hub, converter = load_preset(keras_hub, source, weights == "imagenet", download_timeout)
    return as_base(hub, tuple(input_shape), converter)


def from_backbone(backbone: Any, directory: str | os.PathLike | None = None,
                  image_converter: Any = None) -> dict[str, Any]:
    """Save a KerasHub backbone object as a preset folder; return the recipe's section.

    Use it to fine-tune a backbone built or changed in Python::

        section = from_backbone(keras_hub.models.ViTBackbone(...), "presets/my_vit")
        recipe = finetunekit.Recipe.from_dict({"backbone": section, ...})

    Args:
        backbone: keras_hub.models.Backbone. The backbone, weights as they are.
        directory: path or None. Folder to write; None: a new temporary folder (resume
            and retrain rebuild from it, so give a lasting folder for those).
        image_converter: keras_hub.layers.ImageConverter or None. Saved beside, so that
            its scale and offset become the model's rescaling; None: pixels pass as
            floats in [0, 255].

    Returns:
        dict. A ``[backbone]`` section: ``name``, ``preset``, ``weights`` and
        ``input_shape`` (the backbone's own, or 224x224 if it takes any size).
    """
    folder = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="preset-"))
    folder.mkdir(parents=True, exist_ok=True)
    backbone.save_to_preset(str(folder))
    if image_converter is not None:
        image_converter.save_to_preset(str(folder))
    height, width, channels = tuple(backbone.input_shape[1:])
    return {"name": "keras_hub", "preset": str(folder), "weights": "imagenet",
            "input_shape": [height or 224, width or 224, channels or 3]}


@hookimpl(tryfirst=True)
def finetunekit_export_model(model, format, run):
    """Fix KerasHub's layer configs before any model is written (LoRA's merged copy too);
    the model itself is saved as it is."""
    if "keras_hub" in sys.modules:  # a model with KerasHub layers has imported it
        fix_layer_configs(model)
        prepare_to_save(model)
    return None


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


@hookimpl
def finetunekit_check_saved_model(model, path, format, run, reload):
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
            f"back ({type(exc).__name__}: {str(exc)[:300]}). {kept} Save it with format "
            "'checkpoint' (every variable as it is) and report the KerasHub family "
            "(docs/backbones.md).") from exc
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
            f"state. {kept} Save it with format 'checkpoint' (every variable as it is) "
            "and report the KerasHub family (docs/backbones.md).")


@hookimpl
def finetunekit_register_backbones(register):
    register(Backbone(
        name="keras_hub",
        build=build_keras_hub,
        preprocess=None,  # the base rescales itself, with the preset's converter
        min_size=32,
        blocks=hub_blocks,
        params={
            "preset": Param(str, help="KerasHub preset name, or the path of a preset folder"),
            "download_timeout": Param(
                float, DEFAULT_TIMEOUT, min=0.1,
                help="seconds to wait for the preset's download host before failing"),
        },
        description=(f"KerasHub image backbone from a preset name or folder (ViT: a block per "
                     f"transformer layer; ResNet: per stage). Needs {INSTALL}."),
    ))
