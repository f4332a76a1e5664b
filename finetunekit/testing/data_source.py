"""``check_data_source``: a data source loads uint8 images, consistent labels and class
names, the same way twice, and trains."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from finetunekit.core.components import Data
from finetunekit.core.engine import Engine
from finetunekit.core.recipe import Recipe
from finetunekit.testing.tiny import SIZE, tiny_recipe


def _batches(part: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(x, y)`` numpy pairs of one split: the arrays themselves, or each batch of a
    dataset (``tf.data.Dataset``, ``keras.utils.PyDataset`` or any iterable of batches)."""
    import keras

    if isinstance(part, tuple):
        yield np.asarray(part[0]), np.asarray(part[1])
        return
    batches = (part[i] for i in range(len(part))) if isinstance(part, keras.utils.PyDataset) \
        else iter(part)
    for batch in batches:
        yield (np.asarray(keras.ops.convert_to_numpy(batch[0])),
               np.asarray(keras.ops.convert_to_numpy(batch[1])))


def _split(data: Any, split: str, input_shape: tuple[int, ...], where: str
           ) -> tuple[list[np.ndarray], np.ndarray]:
    """Check one split's images; return its image batches and all its labels."""
    part = getattr(data, split)
    assert part is not None, f"{where}: no {split} split"
    images, labels = [], []
    for x, y in _batches(part):
        assert x.dtype == np.uint8, f"{where}: {split} images must be uint8. Received {x.dtype}"
        assert x.ndim == 4 and x.shape[1:] == tuple(input_shape), (
            f"{where}: {split} images must be (n, *input_shape) = (n, "
            f"{', '.join(map(str, input_shape))}). Received {x.shape}")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        assert y.ndim == 1, (f"{where}: {split} labels must be class indices, one per image. "
                             f"Received shape {y.shape}")
        assert len(y) == len(x), f"{where}: {split} has {len(x)} images but {len(y)} labels"
        images.append(x)
        labels.append(y)
    assert images and sum(map(len, images)), f"{where}: no {split} images"
    return images, np.concatenate(labels) if labels else np.zeros(0, "int32")


def check_data_source(name: str, params: Mapping[str, Any] | None = None, *,
                      plugins: Iterable[Any] = (),
                      input_shape: tuple[int, int, int] = (SIZE, SIZE, 3)) -> Data:
    """Prove a data source keeps the contract every built-in data source keeps.

    Loads ``[data] source = name`` with `params` through an :class:`~finetunekit.Engine`
    and checks:

    * it returns :class:`~finetunekit.Data` whose splits are ``(x, y)`` arrays or
      datasets of such batches, with uint8 images of shape ``(n, *input_shape)`` and
      one label per image;
    * labels are whole numbers in range: ``0 .. len(class_names) - 1`` when the source
      names its classes, and every named class has an image;
    * loading the same recipe twice gives the same arrays, labels and class names;
    * a tiny recipe (VGG16, random weights) trains one epoch on it, from the recipe.

    Args:
        name: str. Data source name (``[data] source``).
        params: dict or None. The source's own recipe keys (``[data]``).
        plugins: iterable. Plugins to register (where the source comes from).
        input_shape: the model input the images must be resized to.

    Returns:
        The :class:`~finetunekit.Data` of the first load.

    Raises:
        AssertionError: naming the data source and what is wrong.
    """
    from finetunekit import FinetunekitError

    engine = Engine(plugins=list(plugins), entry_points=False)
    where = f"data source '{name}'"

    def recipe(classes: int = 1) -> Recipe:
        return tiny_recipe({"input_shape": list(input_shape)}, classes=classes,
                           data={"source": name, **(params or {})})

    loaded = []
    for _ in range(2):
        try:
            loaded.append(engine.load_data(recipe()))
        except FinetunekitError as exc:
            raise AssertionError(f"{where}: loading failed: {exc}") from exc
    first, second = loaded
    assert isinstance(first, Data), (
        f"{where}: returned {type(first).__name__}, not finetunekit.Data")
    assert (first.validation is None) == (second.validation is None), (
        f"{where}: loading the same recipe twice gave a validation split only once")
    splits = {}
    for split in ("train", "validation"):
        if split == "validation" and first.validation is None:
            continue
        splits[split] = (_split(first, split, input_shape, where),
                         _split(second, split, input_shape, where))
    labels = np.concatenate([one[1] for one, _ in splits.values()])
    assert np.all(labels == np.round(labels)) and labels.min() >= 0, (
        f"{where}: labels must be whole numbers from 0. Received values "
        f"{sorted(set(labels.tolist()))[:8]}")
    labels = labels.astype("int64")
    names = first.class_names
    if names is not None:
        assert len(set(names)) == len(names) and all(isinstance(n, str) for n in names), (
            f"{where}: class_names must be distinct strings. Received {names}")
        outside = sorted(set(labels.tolist()) - set(range(len(names))))
        assert not outside, (f"{where}: labels {outside[:8]} have no class name; "
                             f"class_names has {len(names)}: {names}")
        empty = [n for i, n in enumerate(names) if not np.any(labels == i)]
        assert not empty, f"{where}: classes without an image: {empty}"
    for split, ((x1, y1), (x2, y2)) in splits.items():
        same = (len(x1) == len(x2) and all(np.array_equal(a, b) for a, b in zip(x1, x2))
                and np.array_equal(y1, y2))
        assert same, f"{where}: loading the same recipe twice gave different {split} data"
    assert first.class_names == second.class_names, (
        f"{where}: loading the same recipe twice gave different class_names: "
        f"{first.class_names} and {second.class_names}")

    classes = len(names) if names is not None else int(labels.max()) + 1
    try:
        run = engine.run(recipe(classes if classes > 2 else 1), save=False)
    except FinetunekitError as exc:
        raise AssertionError(f"{where}: one epoch of a tiny recipe failed: {exc}") from exc
    assert len(run.history) == 1 and math.isfinite(run.history[0]["loss"]), (
        f"{where}: one epoch of a tiny recipe gave history {run.history}")
    return first
