"""``check_backbone``: a backbone builds, groups its layers into blocks, trains and
round-trips."""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from finetunekit.core.components import Data
from finetunekit.core.engine import Engine, Run
from finetunekit import hookimpl
from finetunekit.core.recipe import Recipe
from finetunekit.testing.tiny import tiny_data, tiny_recipe


class _Snapshots:
    """A plugin that copies every variable of the model when a run starts training."""

    def __init__(self) -> None:
        self.values: list[tuple[Any, np.ndarray]] = []
        self.trainable: set[str] = set()

    @hookimpl
    def finetunekit_run_start(self, run: Run) -> None:
        self.values = [(v, np.array(v.numpy(), copy=True)) for v in run.model.weights]
        self.trainable = {layer.name for layer in run.base.layers if layer.trainable_weights}

    def changed(self, run: Run) -> tuple[set[str], bool]:
        """Base layers any of whose variables changed since the start, and whether any
        variable outside the base (the head's) changed."""
        moved = {id(v) for v, value in self.values if not np.array_equal(v.numpy(), value)}
        base_ids = {id(v) for v in run.base.weights}
        layers = {layer.name for layer in run.base.layers
                  if any(id(v) in moved for v in layer.weights)}
        return layers, bool(moved - base_ids)


@dataclass(frozen=True)
class BackboneReport:
    """What :func:`check_backbone` found.

    Attributes:
        size: the input height and width the checks ran at.
        min_size: the backbone's declared ``min_size``.
        blocks: the base's layer names grouped into blocks.
        trained: base layers one ``full`` step changed.
    """

    size: int
    min_size: int
    blocks: list[list[str]]
    trained: set[str]


def _build(engine: Engine, recipe: Recipe, where: str) -> Run:
    from finetunekit import FinetunekitError

    try:
        return engine.build(recipe)
    except FinetunekitError as exc:
        raise AssertionError(f"{where}: building failed: {exc}") from exc


def _block_problems(blocks: list[list[str]], names: list[str]) -> list[str]:
    flat = [name for block in blocks for name in block]
    problems = []
    missing = [name for name in names if name not in flat]
    unknown = sorted(set(flat) - set(names))
    twice = sorted({name for name in flat if flat.count(name) > 1})
    if missing:
        problems.append(f"layers in no block: {missing[:8]}")
    if unknown:
        problems.append(f"names that are not top-level layers of the base: {unknown[:8]}")
    if twice:
        problems.append(f"layers in more than one block: {twice[:8]}")
    if not problems and flat != names:
        first = next(i for i, (a, b) in enumerate(zip(flat, names)) if a != b)
        problems.append(f"layers out of order from position {first}: blocks have "
                        f"{flat[first:first + 3]}, the base has {names[first:first + 3]}")
    if any(not block for block in blocks):
        problems.append("empty blocks")
    return problems


@contextlib.contextmanager
def _eager_functions(enabled: bool) -> Iterator[None]:
    """Under TensorFlow, run every ``tf.function`` eagerly inside (Keras's ``fit`` too):
    the same semantics without tracing a graph. A no-op if not `enabled` or under JAX."""
    import keras

    if not enabled or keras.backend.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf

    previous = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not apply to tf.data functions")
            yield
    finally:
        tf.config.run_functions_eagerly(previous)


def check_backbone(name: str, params: Mapping[str, Any] | None = None, *,
                   plugins: Iterable[Any] = (), size: int | None = None,
                   eager: bool = False) -> BackboneReport:
    """Prove a backbone keeps the contract every built-in backbone keeps.

    Builds the backbone through an :class:`~finetunekit.Engine` with random weights at a
    small input (its ``min_size`` unless `size` is given) and checks:

    * it is a ``keras.Model`` without its top: its output is a feature map
      (batch, height, width, channels);
    * the model takes uint8 images end to end: the backbone's preprocessing accepts them
      and the predictions are finite;
    * its blocks hold every top-level layer of the base exactly once, in order;
    * ``min_size`` holds: the backbone builds at ``min_size``, and one pixel less is
      refused with a :class:`~finetunekit.RecipeError` naming ``backbone.input_shape``;
    * one training step with ``feature_extraction`` changes the head and no base
      variable (BatchNorm statistics included); one with ``full`` (``train_bn``)
      changes the head and the base, and no base layer it leaves frozen;
    * a model saved and loaded again (format ``keras``) predicts identically.

    Args:
        name: str. Backbone name.
        params: dict or None. The backbone's own recipe keys (``[backbone]``).
        plugins: iterable. Plugins to register (where the backbone comes from).
        size: int or None. Input height and width of the checks; None: ``min_size``.
        eager: bool. Under TensorFlow, train without tracing graphs: the same checks,
            two to three times faster for a deep backbone. No effect under JAX.

    Returns:
        A :class:`BackboneReport`.

    Raises:
        AssertionError: naming the backbone and what is wrong.
    """
    from finetunekit import FinetunekitError, RecipeError

    snapshots = _Snapshots()
    engine = Engine(plugins=[*plugins, snapshots], entry_points=False)
    min_size = engine.catalogue.get("backbone", name).min_size
    size = size or min_size
    where = f"backbone '{name}' at {size}x{size}"

    def recipe(strategy: str | dict[str, Any], at: int = size) -> Recipe:
        return tiny_recipe({"name": name, "input_shape": [at, at, 3], **(params or {})},
                           strategy)

    if size != min_size:
        _build(engine, recipe("full", min_size), f"backbone '{name}' at its min_size {min_size}")
    if min_size > 1:
        below = f"backbone '{name}': an input of {min_size - 1}x{min_size - 1}, below its " \
                f"min_size {min_size},"
        try:
            engine.build(recipe("full", min_size - 1))
        except RecipeError as exc:
            assert "backbone.input_shape" in str(exc), (
                f"{below} was refused without naming backbone.input_shape: {exc}")
        except FinetunekitError as exc:
            raise AssertionError(f"{below} was not refused as a RecipeError: {exc}") from exc
        else:
            raise AssertionError(f"{below} was not refused")

    import keras

    run = _build(engine, recipe("full"), where)
    assert isinstance(run.base, keras.Model), (
        f"{where}: the base is a {type(run.base).__name__}, not a keras.Model")
    shape = tuple(run.base.output_shape)
    assert len(shape) == 4 and all(d is None or d > 0 for d in shape[1:]), (
        f"{where}: the base must end in a feature map (batch, height, width, channels), "
        f"without its top. Received output shape {shape}")
    names = [layer.name for layer in run.base.layers]
    problems = _block_problems([list(b) for b in run.blocks], names)
    assert not problems, f"{where}: blocks must hold every top-level layer once, in order: " + \
        "; ".join(problems)

    images = tiny_data(n=4, size=size).train[0]
    # unbalanced, so that the head's bias has a gradient even where the features vanish
    # (MobileNet at 32x32 with random weights and BatchNorm in inference mode)
    data = Data(train=(images, np.array([0, 1, 1, 1], dtype="int32")))
    predictions = keras.ops.convert_to_numpy(run.model(images, training=False))
    assert predictions.shape == (4, 1) and np.isfinite(predictions).all(), (
        f"{where}: uint8 images in, expected 4 finite predictions; received shape "
        f"{predictions.shape}, finite: {bool(np.isfinite(predictions).all())}")

    with _eager_functions(eager):
        probe = engine.run(recipe("feature_extraction"), data=data, save=False)
    changed, head_changed = snapshots.changed(probe)
    assert not changed, f"{where}, feature_extraction: base layers changed: {sorted(changed)[:8]}"
    assert head_changed, f"{where}, feature_extraction: the head did not change"

    # BatchNorm trains here: with random weights and BatchNorm in inference mode, deep
    # activations can vanish (MobileNet at 32x32: features ~1e-20) or saturate (ReLU6 at
    # 6) and pass no gradient; batch statistics keep them in range. Which layers a
    # strategy trains is check_strategy's to prove.
    with _eager_functions(eager):
        full = engine.run(recipe({"name": "full", "train_bn": True}), data=data, save=False)
    changed, head_changed = snapshots.changed(full)
    assert changed, f"{where}, full: no base variable changed"
    frozen = changed - snapshots.trainable
    assert not frozen, f"{where}, full: frozen layers changed: {sorted(frozen)[:8]}"
    assert head_changed, f"{where}, full: the head did not change"

    with tempfile.TemporaryDirectory(prefix="finetunekit-check-") as folder:
        path = engine.save_model(full.model, Path(folder) / "model.keras")
        loaded = engine.load_model(path)
        again = keras.ops.convert_to_numpy(loaded(images, training=False))
    before = keras.ops.convert_to_numpy(full.model(images, training=False))
    assert np.array_equal(again, before), (
        f"{where}: the model saved and loaded again predicts differently (largest "
        f"difference {float(np.max(np.abs(again - before))):.3g})")
    return BackboneReport(size=size, min_size=min_size, blocks=[list(b) for b in run.blocks],
                          trained=changed)


# -- data sources -----------------------------------------------------------------------
