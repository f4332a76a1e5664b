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
:mod:`finetunekit.plugins.backbones.hub_saving` fixes what keras-hub's layers would save
wrong, and checks each saved model by loading it back.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import keras

from finetunekit.core.components import Backbone
from finetunekit.core.errors import RecipeError, WeightsError, did_you_mean
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
    BLOCK_PATTERNS,
    feature_map,
    on_input_grid,
    unrolled,
    vision_tower,
)
from finetunekit.plugins.backbones.hub_saving import (
    check_round_trip,
    fix_layer_configs,
    prepare_to_save,
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


@hookimpl
def finetunekit_check_saved_model(model, path, format, run, reload):
    """Refuse a written model holding KerasHub layers that does not load back with the
    same predictions (:func:`~finetunekit.plugins.backbones.hub_saving.check_round_trip`)."""
    check_round_trip(model, path, format, reload)


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
