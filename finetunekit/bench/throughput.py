"""Training throughput of finetunekit against the seed's plain Keras code, same run.

For one configuration (backbone, strategy, batch size, precision) two models are timed
on the same synthetic images:

- **finetunekit**: ``Engine.build(recipe)`` and ``Engine.compile_stage(run, stage)``,
  then ``run.model`` fed uint8 images (the engine's own input; normalised on the
  device). This is the composed model's step: the feature cache, which lets a
  frozen-base stage train the head alone on features computed once, is *not* used, so
  the number compares like for like (benchmarks/test_feature_cache.py times the cache).
- **baseline**: the seed's hand-written code with no finetunekit in it:
  ``keras.applications.<Backbone>(include_top=False)``, ``Sequential([base, Flatten(),
  Dense(256, relu), Dense(1, sigmoid)])``, the base layers the timed stage trains set
  ``trainable`` by hand (for ``partial`` on VGG16 that is the seed's ``layers[15:]``),
  ``RMSprop(2e-5)``, images fed as float32 / 255 as the seed's generator does.

For a KerasHub ViT (:data:`HUB_MODELS`: ``vit_ti16``, ``vit_b16``, built offline from
``keras_hub.models.ViTBackbone`` at the benchmark's image size, random weights, saved as a
preset folder the recipe names) the head pools the class token on both sides, and the
plain code is ``keras_hub.models.Backbone.from_preset(folder)`` with the same
transformer blocks set ``trainable`` by hand, or for ``lora`` its own
``enable_lora(4)`` (there is no seed code for a ViT). For the other strategies that train
only some variables (``bitfit``, ``norm_only``) the plain code trains the whole layers.

Both are timed the same way: one warm-up ``fit`` each (tracing, compiling) outside the
timed region, then ``repeats`` timed ``fit`` calls of ``steps`` batches each, alternating
between the two; the figure is the median images per second. Model building is never
timed.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from finetunekit.core.errors import RecipeError, unknown_name_message
from finetunekit.core.precision import precision_scope
from finetunekit.core.recipe import CORE_KEYS

PRECISIONS = CORE_KEYS["train"]["precision"].choices
"""Keras dtype policies the benchmark knows: those of ``train.precision``."""

SEED_STRATEGIES = ("feature_extraction", "partial", "full")
"""The seed's three recipes: the default strategies of the throughput benchmark."""

_VIT_B16 = dict(patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072)
HUB_MODELS = {
    "vit_ti16": dict(_VIT_B16, num_heads=3, hidden_dim=192, mlp_dim=768),
    "vit_b16": _VIT_B16,
}
"""KerasHub ViTs ``--backbones`` also takes (ViT-Ti/16 and ViT-B/16 shapes, 5.5M and 86M
parameters): ``keras_hub.models.ViTBackbone`` arguments but the image shape."""


@dataclass(frozen=True)
class Config:
    """One throughput measurement.

    Args:
        backbone: str. Backbone name (``finetunekit list``).
        strategy: str. Strategy name.
        batch_size: int. Images per step.
        precision: str. One of :data:`PRECISIONS`.
        image_size: int. Height and width of the synthetic images.
        steps: int. Batches per timed ``fit`` call.
        repeats: int. Timed ``fit`` calls; the median is reported.
    """

    backbone: str = "vgg16"
    strategy: str = "full"
    batch_size: int = 8
    precision: str = "float32"
    image_size: int = 32
    steps: int = 4
    repeats: int = 3

    @property
    def id(self) -> str:
        """A readable id, e.g. ``vgg16-full-b8-float32-32px``."""
        return (f"{self.backbone}-{self.strategy}-b{self.batch_size}-{self.precision}-"
                f"{self.image_size}px")


def check_precision(precision: str) -> str:
    """Return `precision` if the benchmark knows it, else raise a RecipeError."""
    if precision not in PRECISIONS:
        raise RecipeError(unknown_name_message("precision", precision, PRECISIONS))
    return precision


def hub_preset(config: Config, presets: dict[tuple[str, int], str], folder) -> str:
    """The preset folder of `config`'s KerasHub ViT at its image size, saved under
    `folder` on first use and remembered in `presets` (the caller's, for its own run)."""
    from finetunekit.plugins.backbones.keras_hub import require_keras_hub

    key = (config.backbone, config.image_size)
    if key not in presets:
        size = config.image_size
        vit = require_keras_hub().models.ViTBackbone(image_shape=(size, size, 3),
                                                     **HUB_MODELS[config.backbone])
        path = f"{folder}/{config.backbone}-{size}px"
        vit.save_to_preset(path)
        presets[key] = path
    return presets[key]


def seed_recipe(config: Config, preset: str | None = None):
    """The seed's recipe (flatten, Dense 256, one sigmoid unit, RMSprop 2e-5) for `config`;
    for a KerasHub ViT (its `preset` folder) the head pools the class token."""
    from finetunekit.core.recipe import Recipe

    size = config.image_size
    backbone: dict[str, Any] = {"name": config.backbone, "weights": "none",
                                "input_shape": [size, size, 3]}
    if preset is not None:
        backbone.update(name="keras_hub", preset=preset)
    sections: dict[str, Any] = {
        "backbone": backbone,
        "strategy": {"name": config.strategy},
        "head": {"pooling": "cls" if preset else "flatten", "hidden": [256], "classes": 1},
        "optimizer": {"name": "rmsprop", "learning_rate": 2e-5},
        "data": {"batch_size": config.batch_size},
        "train": {"epochs": 4},  # room for multi-stage strategies; nothing trains for it
    }
    if config.strategy == "partial" and config.backbone.startswith("vgg"):
        sections["strategy"]["unfreeze_from"] = 15  # the seed's vgg_base.layers[15:]
    sections["train"]["precision"] = config.precision
    return Recipe.from_dict(sections)


def synthetic(config: Config) -> tuple[np.ndarray, np.ndarray]:
    """``steps * batch_size`` random uint8 images and binary labels (seeded)."""
    rng = np.random.default_rng(0)
    n = config.steps * config.batch_size
    size = config.image_size
    return (rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
            (np.arange(n) % 2).astype("float32"))


def time_fits(models: list[tuple[Any, np.ndarray]], y: np.ndarray, config: Config) -> list[list[float]]:
    """Images per second of each model's ``repeats`` timed ``fit`` calls.

    Each model first fits once untimed (tracing, compiling); the timed calls then
    alternate between the models, so a change in the machine's load (a shared CPU)
    touches both alike.

    Args:
        models: list of (model, images) pairs: each model with the input it is fed.
        y: the labels.
        config: the :class:`Config` (batch size, repeats).
    """
    def fit(model, x):
        model.fit(x, y, batch_size=config.batch_size, epochs=1, shuffle=False, verbose=0)

    for model, x in models:
        fit(model, x)
    rates: list[list[float]] = [[] for _ in models]
    for _ in range(config.repeats):
        for rate, (model, x) in zip(rates, models):
            started = time.perf_counter()
            fit(model, x)
            rate.append(len(x) / (time.perf_counter() - started))
    return rates


def build_finetunekit(engine, config: Config, preset: str | None = None):
    """The engine's model for `config`, compiled for its last stage, and that stage."""
    run = engine.build(seed_recipe(config, preset))
    index = len(run.plan.stages) - 1  # the stage that trains the most of the base
    engine.compile_stage(run, index, steps_per_epoch=config.steps)
    return run.model, run.plan.stages[index]


def _plain_base(config: Config, trainable: frozenset[str], preset: str | None):
    import keras

    if preset is not None:
        import keras_hub

        base = keras_hub.models.Backbone.from_preset(preset, load_weights=False)
        # the layers finetunekit freezes are the ViT's blocks, nested in its encoder here:
        # containers stay trainable, each block and the final LayerNorm as the stage says
        for layer in base._flatten_layers(include_self=False, recursive=True):
            layer.trainable = True
        for layer in base._flatten_layers(include_self=False, recursive=True):
            if layer.name in HUB_UNITS or layer.name.startswith("transformer_block_"):
                layer.trainable = layer.name in trainable
        if config.strategy == "lora":
            # KerasHub's own LoRA (query and value projections), at the strategy's default
            # rank, which seed_recipe keeps: the plain counterpart of finetunekit's
            base.enable_lora(4)
        return base, [keras.layers.Cropping1D((0, base.output_shape[1] - 1)),
                      keras.layers.Flatten()]
    from finetunekit.plugins.backbones.families import BACKBONES

    constructor = next(row["constructor"] for row in BACKBONES if row["name"] == config.backbone)
    base = getattr(keras.applications, constructor)(
        weights=None, include_top=False, input_shape=(config.image_size, config.image_size, 3))
    for layer in base.layers:
        layer.trainable = layer.name in trainable
    return base, [keras.layers.Flatten()]


HUB_UNITS = ("vit_patching_and_embedding", "ln")
"""The plain ViT's layers that are units of finetunekit's base beside the blocks."""


def build_baseline(config: Config, trainable: frozenset[str], *, uint8: bool = False,
                   preset: str | None = None):
    """The seed's hand-written model and compile, no finetunekit (see the module doc).

    With `uint8`, the same code as a careful Keras user would write it for speed: uint8
    images in, ``Rescaling(1/255)`` in the model, the base called with
    ``training=False`` when it is all frozen (GPU.md's fastest plain Keras-JAX).

    Call inside :func:`~finetunekit.core.precision.precision_scope` so the model
    takes the precision (Keras's global policy, restored after).
    """
    import keras

    base, pooling = _plain_base(config, trainable, preset)
    head = [*pooling, keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid")]
    if uint8:
        inputs = keras.Input((config.image_size, config.image_size, 3), dtype="uint8")
        outputs = base(keras.layers.Rescaling(1 / 255)(inputs),
                       training=False if not trainable else None)
        for layer in head:
            outputs = layer(outputs)
        model = keras.Model(inputs, outputs)
    else:
        model = keras.Sequential([base, *head])
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=2e-5),
                  loss="binary_crossentropy", metrics=["acc"])
    return model


def device_name() -> str:
    """The accelerator Keras trains on here, e.g. ``cpu`` or ``gpu: NVIDIA H200``."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            kind = getattr(device, "device_kind", device.platform)
            return device.platform if kind == device.platform else f"{device.platform}: {kind}"
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_logical_devices("GPU")
            return f"gpu: {gpus[0].name}" if gpus else "cpu"
    except Exception:  # a name is only a label: never fail the benchmark for it
        pass
    return backend


def measure(config: Config, engine=None, preset: str | None = None) -> dict[str, Any]:
    """Time finetunekit and the plain baseline for `config`; one row of ``bench.json``.

    Args:
        config: the :class:`Config`.
        engine: :class:`~finetunekit.Engine` or None (a new one without entry points).
        preset: str or None. For a KerasHub ViT (:data:`HUB_MODELS`), its preset folder
            (:func:`hub_preset`).

    Returns:
        dict: the configuration, ``images_per_s``, ``baseline_images_per_s`` (the seed's
        code as written) and ``plain_uint8_images_per_s`` (the same fed uint8), medians;
        every repeat; ``ratio`` (finetunekit / the seed's code) and ``ratio_uint8``
        (finetunekit / the uint8-fed plain code); the stage timed, the backend, the device.
    """
    import keras

    from finetunekit.core.engine import Engine

    check_precision(config.precision)
    engine = engine or Engine(entry_points=False)
    x, y = synthetic(config)
    model, stage = build_finetunekit(engine, config, preset)
    with precision_scope(config.precision):
        baseline = build_baseline(config, stage.trainable, preset=preset)
        fed_uint8 = build_baseline(config, stage.trainable, uint8=True, preset=preset)
    # the seed feeds float32 scaled on the host (its ImageDataGenerator's rescale=1/255)
    ours, theirs, plain_uint8 = time_fits(
        [(model, x), (baseline, x.astype("float32") / 255.0), (fed_uint8, x)], y, config)
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    uint8_median = statistics.median(plain_uint8)
    return {
        "id": config.id,
        "backbone": config.backbone,
        "strategy": config.strategy,
        "stage": stage.name,
        "batch": config.batch_size,
        "precision": config.precision,
        "image_size": config.image_size,
        "steps": config.steps,
        "repeats": config.repeats,
        "images_per_s": round(ours_median, 2),
        "baseline_images_per_s": round(theirs_median, 2),
        "ratio": round(ours_median / theirs_median, 3),
        "plain_uint8_images_per_s": round(uint8_median, 2),
        "ratio_uint8": round(ours_median / uint8_median, 3),
        "images_per_s_repeats": [round(r, 2) for r in ours],
        "baseline_images_per_s_repeats": [round(r, 2) for r in theirs],
        "plain_uint8_images_per_s_repeats": [round(r, 2) for r in plain_uint8],
        "backend": keras.backend.backend(),
        "device": device_name(),
    }
