"""The embedded dataset: scikit-learn's handwritten digits, real scans that ship with it.

1,797 grey 8x8 images of the digits 0-9 (UCI's optical recognition data set), scaled to
0-255, resized to the model's input and repeated over three channels. It installs with
the project and works offline, so the demo and the tests train on real images.
"""

from __future__ import annotations

import functools

import numpy as np

from finetunekit.core.components import Data, DataContext, DataSource
from finetunekit.core.errors import DataError
from finetunekit.core.params import Param
from finetunekit.core.manager import hookimpl


@functools.lru_cache(maxsize=4)
def digits_images(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 RGB images of `size` (height, width), and their labels.

    Decoding and resizing take seconds; the result (read-only, pure data) is kept per
    size, so a demo that loads the digits several times pays it once.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    resized = np.stack([
        np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.BILINEAR)) for img in pixels
    ])
    images = np.repeat(resized[..., None], 3, axis=-1)
    labels = digits.target.astype(np.int32)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def load_digits_data(context: DataContext, classes=None, train_per_class=None,
                     validation_per_class=None) -> Data:
    """Pick `classes` (relabelled 0..k-1), then per class the first shuffled
    `train_per_class` images for training and up to `validation_per_class` of the rest for
    validation (None: all of the rest)."""
    x, y = digits_images(context.input_shape[:2])
    classes = list(range(10)) if classes is None else list(classes)
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise DataError(f"'data.classes' must list at least 2 distinct digits. Received: {classes}.")
    rng = np.random.default_rng(context.seed)
    train_idx, val_idx = [], []
    for digit in classes:
        idx = rng.permutation(np.flatnonzero(y == digit))
        n_train = len(idx) * 4 // 5 if train_per_class is None else train_per_class
        if n_train >= len(idx):
            raise DataError(
                f"'data.train_per_class' must leave images for validation: digit {digit} has "
                f"{len(idx)} images. Received: data.train_per_class={train_per_class}."
            )
        train_idx.append(idx[:n_train])
        rest = idx[n_train:]
        val_idx.append(rest if validation_per_class is None else rest[:validation_per_class])
    lookup = {digit: i for i, digit in enumerate(classes)}
    relabel = np.vectorize(lookup.__getitem__, otypes=[np.int32])

    def take(parts):
        idx = rng.permutation(np.concatenate(parts))
        return x[idx], relabel(y[idx])

    return Data(train=take(train_idx), validation=take(val_idx),
                class_names=[str(d) for d in classes])


@hookimpl
def finetunekit_register_data_sources(register):
    register(DataSource(
        name="digits", load=load_digits_data,
        params={
            "classes": Param(list, None, nullable=True, items=int, min=0, max=9,
                             help="digits to use, relabelled 0..k-1 (default: all ten)"),
            "train_per_class": Param(int, None, nullable=True, min=1,
                                     help="training images per class (default: 80%)"),
            "validation_per_class": Param(int, None, nullable=True, min=1,
                                          help="validation images per class (default: the rest)"),
        },
        description="scikit-learn's handwritten digits (real 8x8 scans), embedded and offline.",
    ))
