"""The accuracy benchmark's task: a fixed test set, a pool, and labels drawn from the pool
per seed (docs/benchmarks.md, "The protocol").

The test set is set aside once, with :data:`TEST_SEED`, and is never trained on, tuned
on or drawn from; a seed draws ``n`` labelled images per class from the pool (nested
across budgets), and the tuning holds out a share of its own draw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from finetunekit.core.errors import DataError
from finetunekit.demo.task import TARGET_CLASSES

TEST_SEED = 12345
"""Seeds the one test split of the digits 5-9 (fixed for every seed and strategy)."""


@dataclass
class Task:
    """The target task's images.

    Attributes:
        images: (n, h, w, 3) uint8. Every image of the target task.
        labels: (n,) int32, from 0.
        class_names: list of str.
        test: int array. Indices of the test set (ID), never trained or tuned on.
        pool: int array. Indices training and tuning draw labels from.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    test: np.ndarray
    pool: np.ndarray = field(repr=False)


def digits_task(size: int, test_per_class: int) -> Task:
    """The digits 5-9 (relabelled 0-4): ``test_per_class`` per digit set aside, with
    :data:`TEST_SEED`; the rest is the pool."""
    from finetunekit.plugins.data.digits import digits_images

    x, y = digits_images((size, size))
    keep = np.flatnonzero(np.isin(y, TARGET_CLASSES))
    labels = np.searchsorted(TARGET_CLASSES, y[keep]).astype(np.int32)
    return split_task(x[keep], labels, [str(d) for d in TARGET_CLASSES], test_per_class)


def split_task(images: np.ndarray, labels: np.ndarray, class_names: list[str],
               test_per_class: int) -> Task:
    """Set ``test_per_class`` images of each class aside (shuffled, :data:`TEST_SEED`)."""
    rng = np.random.default_rng(TEST_SEED)
    test, pool = [], []
    for k in range(len(class_names)):
        idx = rng.permutation(np.flatnonzero(labels == k))
        if len(idx) <= test_per_class + 1:
            raise DataError(
                f"Class '{class_names[k]}' has {len(idx)} images: too few for a test set of "
                f"{test_per_class} and labels to train on. Lower test_per_class.")
        test.append(idx[:test_per_class])
        pool.append(idx[test_per_class:])
    return Task(images, labels, class_names, rng.permutation(np.concatenate(test)),
                np.sort(np.concatenate(pool)))


def user_task(engine, folder: str, size: int) -> Task:
    """``--data``: its ``train/`` is the pool, its ``validation/`` the test set."""
    from finetunekit.core.recipe import Recipe

    root = Path(folder)
    if not (root / "train").is_dir() or not (root / "validation").is_dir():
        raise DataError(
            f"--data must be a folder holding 'train/' and 'validation/', each with one "
            f"sub-folder of images per class. Received: '{root}'.")
    data = engine.load_data(Recipe.from_dict({
        "backbone": {"name": "vgg16", "weights": "none", "input_shape": [size, size, 3]},
        "head": {"classes": 2},
        "data": {"source": "folder", "train": str(root / "train"),
                 "validation": str(root / "validation"),
                 "in_memory": True}}))  # the benchmark indexes arrays
    (tx, ty), (vx, vy) = data.train, data.validation
    images = np.concatenate([tx, vx])
    labels = np.concatenate([ty, vy]).astype(np.int32)
    return Task(images, labels, list(data.class_names), np.arange(len(tx), len(images)),
                np.arange(len(tx)))


def draw(task: Task, per_class: int | None, seed: int) -> np.ndarray:
    """``per_class`` pool indices per class (None: all), by `seed`; nested across budgets
    (the order per class depends on the seed alone)."""
    rng = np.random.default_rng([seed, 7])
    picked = []
    for k in range(len(task.class_names)):
        own = rng.permutation(task.pool[task.labels[task.pool] == k])
        if per_class is not None and per_class > len(own):
            raise DataError(
                f"A budget of {per_class} labels per class needs that many images of class "
                f"'{task.class_names[k]}' in the pool, which has {len(own)}. Lower the budget.")
        picked.append(own if per_class is None else own[:per_class])
    return np.concatenate(picked)


def tuning_split(task: Task, indices: np.ndarray, holdout: float) -> tuple[np.ndarray, np.ndarray]:
    """Split drawn labels into (fit, held out): the last ``holdout`` share of each class
    (at least one image per class, at least one left to fit)."""
    return tuning_folds(task, indices, holdout, min_held_out=1)[0]


def tuning_folds(task: Task, indices: np.ndarray, holdout: float, min_held_out: int
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (fit, held out) splits the tuning scores each rate on: cross-validation folds.

    Each class holds out its last ``holdout`` share (at least one image, at least one
    left to fit); when that is fewer than `min_held_out` images of a class, further folds
    hold out the next disjoint parts of the draw, until the folds together have held out
    `min_held_out` images of each class or every label was held out once. The first fold
    is :func:`tuning_split`'s split, so a budget that needs no more folds tunes exactly as
    a single split does.
    """
    parts = []
    for k in range(len(task.class_names)):
        own = indices[task.labels[indices] == k]
        out = max(1, round(len(own) * holdout))
        if out >= len(own):
            raise DataError(
                f"Tuning holds out {out} of {len(own)} labels of class "
                f"'{task.class_names[k]}' and needs one left to train on: a budget needs at "
                "least 2 labels per class.")
        parts.append((own, out))
    folds = min(max(-(-max(1, min_held_out) // out) for _, out in parts),
                min(len(own) // out for own, out in parts))
    splits = []
    for j in range(folds):
        fit, held = [], []
        for own, out in parts:
            stop = len(own) - j * out
            held.append(own[stop - out:stop])
            fit.append(np.concatenate([own[:stop - out], own[stop:]]))
        splits.append((np.concatenate(fit), np.concatenate(held)))
    return splits
