"""Built-in augmentations: core Keras random layers, which run on every backend, and
MixUp and CutMix, which mix labels too.

The layers sit in the model between the uint8 input and the backbone's normalisation
and act only on training batches. MixUp and CutMix are ``mix`` functions in numpy,
applied by :mod:`finetunekit.core.mixing` to each epoch's training batches. A stage with
either kind does not use the feature cache (the base would see different images every
epoch).
"""

from __future__ import annotations

import keras
import numpy as np

from finetunekit.core.components import Augmentation
from finetunekit.core.params import Param
from finetunekit.core.manager import hookimpl


def build_none(input_shape, **params):
    """No layer (a label-mixing augmentation has none either: it works outside the model)."""
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


def mixup(images, labels, other_images, other_labels, rng, alpha=0.2):
    """MixUp (Zhang et al. 2018): ``lam * a + (1 - lam) * b`` for images and labels alike,
    ``lam ~ Beta(alpha, alpha)`` per image. Pixels are rounded back to uint8 (at most half
    a level from the exact blend)."""
    lam = rng.beta(alpha, alpha, size=len(images)).astype(np.float32)
    share = lam[:, None, None, None]
    blend = share * images + (1.0 - share) * other_images
    mixed = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    return mixed, lam[:, None] * labels + (1.0 - lam[:, None]) * other_labels


def cutmix(images, labels, other_images, other_labels, rng, alpha=1.0):
    """CutMix (Yun et al. 2019): a box of the partner image pasted in, of area
    ``1 - lam`` with ``lam ~ Beta(alpha, alpha)``; each label is weighted by the exact
    share of pixels the image keeps after the box is clipped at the border."""
    mixed = images.copy()
    height, width = images.shape[1:3]
    keep = np.ones(len(images), dtype=np.float32)
    lam = rng.beta(alpha, alpha, size=len(images))
    centre_y = rng.integers(0, height, size=len(images))
    centre_x = rng.integers(0, width, size=len(images))
    for i in range(len(images)):
        cut = np.sqrt(1.0 - lam[i])
        half_h, half_w = int(height * cut) // 2, int(width * cut) // 2
        top, bottom = max(centre_y[i] - half_h, 0), min(centre_y[i] + half_h, height)
        left, right = max(centre_x[i] - half_w, 0), min(centre_x[i] + half_w, width)
        mixed[i, top:bottom, left:right] = other_images[i, top:bottom, left:right]
        keep[i] = 1.0 - (bottom - top) * (right - left) / (height * width)
    return mixed, keep[:, None] * labels + (1.0 - keep[:, None]) * other_labels


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
    register(Augmentation(
        name="mixup", build=build_none, mix=mixup,
        params={"alpha": Param(float, 0.2, min=1e-3, help="Beta(alpha, alpha) of the mix")},
        description="MixUp: images and labels blended in pairs (soft labels).",
    ))
    register(Augmentation(
        name="cutmix", build=build_none, mix=cutmix,
        params={"alpha": Param(float, 1.0, min=1e-3, help="Beta(alpha, alpha) of the kept area")},
        description="CutMix: a box of another image pasted in, labels by area (soft labels).",
    ))
