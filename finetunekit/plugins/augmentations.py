"""Built-in augmentations: core Keras random layers, which run on every backend.

They sit in the model between the uint8 input and the backbone's normalisation and act
only on training batches. A stage with augmentation does not use the feature cache
(the base would see different images every epoch).
"""

from __future__ import annotations

import keras

from finetunekit.core.components import Augmentation
from finetunekit.core.params import Param
from finetunekit.core.plugins import hookimpl


def build_none(input_shape):
    return None


def build_basic(input_shape, flip="horizontal", rotation=0.1, zoom=0.1, translation=0.1,
                contrast=0.0, seed=None):
    """Flips, small rotations, zooms and shifts (the Keras transfer-learning guide's set)."""
    layers = []
    if flip != "none":
        layers.append(keras.layers.RandomFlip(flip, seed=seed))
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, seed=seed))
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, seed=seed))
    if translation:
        layers.append(keras.layers.RandomTranslation(translation, translation, seed=seed))
    if contrast:
        layers.append(keras.layers.RandomContrast(contrast, value_range=(0, 255), seed=seed))
    return keras.Sequential(layers, name="augment") if layers else None


def build_randaugment(input_shape, num_ops=2, factor=0.5, seed=None):
    """RandAugment (Cubuk et al. 2020) as in keras.layers.RandAugment."""
    return keras.Sequential([keras.layers.RandAugment(value_range=(0, 255), num_ops=num_ops,
                                                      factor=factor, seed=seed)], name="augment")


_FRACTION = {"min": 0.0, "max": 1.0}


@hookimpl
def finetunekit_register_augmentations(register):
    register(Augmentation(name="none", build=build_none, description="No augmentation."))
    register(Augmentation(
        name="basic", build=build_basic,
        params={
            "flip": Param(str, "horizontal", choices=("horizontal", "vertical",
                                                      "horizontal_and_vertical", "none")),
            "rotation": Param(float, 0.1, help="fraction of a full turn", **_FRACTION),
            "zoom": Param(float, 0.1, help="fraction of the size", **_FRACTION),
            "translation": Param(float, 0.1, help="fraction of the size", **_FRACTION),
            "contrast": Param(float, 0.0, **_FRACTION),
            "seed": Param(int, None, nullable=True, min=0),
        },
        description="Random flips, rotations, zooms, shifts (and contrast).",
    ))
    register(Augmentation(
        name="randaugment", build=build_randaugment,
        params={
            "num_ops": Param(int, 2, min=1, max=10),
            "factor": Param(float, 0.5, **_FRACTION),
            "seed": Param(int, None, nullable=True, min=0),
        },
        description="RandAugment (keras.layers.RandAugment).",
    ))
