"""Test helpers for finetunekit and its plugins: tiny recipes, weight snapshots, and
conformance checks that prove a strategy, a backbone or a data source keeps its contract.

Third-party authors test their components the way the built-ins are tested::

    from finetunekit.testing import check_backbone, check_data_source, check_strategy

    def test_my_strategy():
        check_strategy("my_strategy", {"n": 2}, plugins=[my_plugin])

    def test_my_backbone():
        check_backbone("my_backbone", plugins=[my_plugin])

    def test_my_data_source(tmp_path):
        check_data_source("my_source", {"path": str(tmp_path)}, plugins=[my_plugin])

Everything here uses small inputs (32x32, or the backbone's minimum) and random weights,
so it runs in seconds on a CPU.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from finetunekit.core.components import Data
from finetunekit.core.engine import Engine, Run
from finetunekit import hookimpl
from finetunekit.plugins.strategies.freezing import is_batch_norm, is_norm_parameter
from finetunekit.core.recipe import Recipe

SIZE = 32


def tiny_recipe(backbone: str | Mapping[str, Any] = "vgg16",
                strategy: str | Mapping[str, Any] = "feature_extraction",
                *, classes: int = 1, epochs: int = 1, batch_size: int = 4,
                optimizer: str | Mapping[str, Any] = "adam", learning_rate: float = 1e-3,
                **sections: Mapping[str, Any]) -> Recipe:
    """A recipe small enough for two CPU cores: 32x32 inputs and random weights.

    Args:
        backbone: str or dict. Backbone name, or keys merged into the tiny ``[backbone]``
            section (``{"weights": path}``).
        strategy: str or dict. Strategy name, or the whole ``[strategy]`` section.
        classes: int. ``head.classes``.
        epochs: int. ``train.epochs``.
        batch_size: int. ``data.batch_size``.
        optimizer: str or dict. ``optimizer.name``, or keys merged into ``[optimizer]``.
        learning_rate: float. ``optimizer.learning_rate``.
        **sections: extra keys merged into each named section.
    """
    strategy_section = dict(strategy) if isinstance(strategy, Mapping) else {"name": strategy}
    backbone_section = {"name": "vgg16", "weights": "none", "input_shape": [SIZE, SIZE, 3]}
    backbone_section.update(backbone if isinstance(backbone, Mapping) else {"name": backbone})
    data: dict[str, dict[str, Any]] = {
        "backbone": backbone_section,
        "strategy": strategy_section,
        "head": {"classes": classes},
        "optimizer": {"name": "adam", "learning_rate": learning_rate,
                      **(optimizer if isinstance(optimizer, Mapping) else {"name": optimizer})},
        "data": {"batch_size": batch_size},
        "train": {"epochs": epochs, "seed": 0},
    }
    for name, body in sections.items():
        data.setdefault(name, {}).update(body)
    return Recipe.from_dict(data)


def tiny_data(n: int = 8, classes: int = 1, size: int = SIZE, seed: int = 0) -> Data:
    """Random uint8 images and labels for a head with `classes` outputs."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    y = (np.arange(n) % (2 if classes == 1 else classes)).astype("int32")
    return Data(train=(x, y), validation=(x[: min(n, 4)], y[: min(n, 4)]))


def snapshot(layers: Iterable[Any]) -> dict[str, list[np.ndarray]]:
    """Copies of every weight (trainable or not, BatchNorm statistics too), by layer."""
    return {layer.name: [np.array(w.numpy(), copy=True) for w in layer.weights] for layer in layers}


def changed_layers(before: Mapping[str, list[np.ndarray]],
                   after: Mapping[str, list[np.ndarray]]) -> set[str]:
    """Layers any of whose weights differ in any bit between two snapshots."""
    return {
        name for name in before
        if any(not np.array_equal(a, b) for a, b in zip(before[name], after[name]))
    }


def snapshot_variables(variables: Iterable[Any]) -> dict[str, np.ndarray]:
    """Copies of variables' values, by variable path."""
    return {v.path: np.array(v.numpy(), copy=True) for v in variables}


@dataclass(frozen=True)
class StepReport:
    """What one training step of one stage changed.

    Attributes:
        stage: the :class:`~finetunekit.Stage`.
        changed: base layers any of whose weights changed in any bit.
        expected: base layers the stage declares will change.
        weighted: base layers that have weights.
        head_changed: whether any head weight changed.
        changed_variables: paths of base variables that changed in any bit.
        expected_variables: paths of base variables the stage declares will change
            (BatchNorm moving statistics included when BatchNorm trains).
        statistics: paths of the BatchNorm moving statistics the stage declares will update.
        steps: variable path (base and head) -> largest absolute change in the step.
        rates: variable path -> the learning rate the stage declares for it (base
            variables expected to train, and the head's).
    """

    stage: Any
    changed: set[str]
    expected: set[str]
    weighted: set[str]
    head_changed: bool
    changed_variables: set[str] = field(default_factory=set)
    expected_variables: set[str] = field(default_factory=set)
    statistics: set[str] = field(default_factory=set)
    steps: dict[str, float] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)


def _is_statistic(variable: Any) -> bool:
    return variable.path.rsplit("/", 1)[-1] in ("moving_mean", "moving_variance")


def expected_variables(run: Run, stage: Any) -> dict[str, Any]:
    """Base variables a step of `stage` should change, by path, per the Stage contract.

    In a layer of ``stage.trainable``: a BatchNorm layer with ``train_bn`` changes whole
    (moving statistics too); a BatchNorm layer without it changes only the gamma and beta
    the ``variables`` filter picks; any other layer changes the variables that were
    trainable after planning (``run.variable_flags``: a LoRA-frozen kernel is not) and
    that the filter picks.

    Returns:
        variable path -> the base layer it belongs to.
    """
    found = {}
    for layer in run.base.layers:
        if layer.name not in stage.trainable:
            continue
        batch_norm = is_batch_norm(layer)
        for variable in layer.weights:
            if batch_norm and stage.train_bn:
                chosen = True
            elif batch_norm:
                chosen = (stage.variables is not None and is_norm_parameter(layer, variable)
                          and bool(stage.variables(layer, variable)))
            else:
                chosen = (run.variable_flags.get(variable.path, variable.trainable)
                          and (stage.variables is None or bool(stage.variables(layer, variable))))
            if chosen:
                found[variable.path] = layer
    return found


def expected_to_change(run: Run, stage: Any) -> set[str]:
    """Base layers with weights that a step of `stage` should change: those holding a
    variable of :func:`expected_variables`."""
    return {layer.name for layer in expected_variables(run, stage).values()}


def step_each_stage(engine: Engine, run: Run, data: Data | None = None, *,
                    epsilon: float | None = None, eager: bool = False) -> list[StepReport]:
    """Run one real training step per stage; report which base layers and variables
    changed, by how much, and the learning rate each was declared to get.

    Args:
        engine: the :class:`~finetunekit.Engine` that built `run`.
        run: the :class:`~finetunekit.Run`.
        data: :class:`~finetunekit.Data` or None (tiny random images).
        epsilon: float or None. If given, set as the optimizer's ``epsilon`` (Adam) before
            each step; :data:`EXACT_EPSILON` makes the step size the learning rate.
        eager: bool. Run the step eagerly: the same semantics without tracing a graph,
            several times faster for one step of a large model under TensorFlow (not
            under JAX, which compiles every operation on its own).
    """
    data = data or tiny_data(classes=int(run.model.output_shape[-1]))
    x, y = data.train
    reports = []
    for index, stage in enumerate(run.plan.stages):
        engine.compile_stage(run, index, steps_per_epoch=1)
        if epsilon is not None:
            run.model.optimizer.epsilon = epsilon  # read when the train step is traced
        run.model.run_eagerly = eager
        before = snapshot(run.base.layers)
        variables = list(run.base.weights) + list(run.head.layer.weights)
        values = snapshot_variables(variables)
        head_before = snapshot([run.head.layer])
        run.model.train_on_batch(x, y)
        after = snapshot_variables(variables)
        changed = changed_layers(before, snapshot(run.base.layers))
        head_changed = bool(changed_layers(head_before, snapshot([run.head.layer])))
        base_paths = {v.path for v in run.base.weights}
        expected = expected_variables(run, stage)
        rates = {path: stage.learning_rate * stage.lr_scales.get(layer.name, 1.0)
                 for path, layer in expected.items()}
        rates.update({v.path: stage.learning_rate for v in run.head.layer.trainable_weights})
        statistics = {v.path for v in run.base.weights if v.path in expected and _is_statistic(v)}
        for path in statistics:
            del rates[path]
        reports.append(StepReport(
            stage=stage, changed=changed, expected=expected_to_change(run, stage),
            weighted={layer.name for layer in run.base.layers if layer.weights},
            head_changed=head_changed,
            changed_variables={p for p in base_paths if not np.array_equal(values[p], after[p])},
            expected_variables=set(expected), statistics=statistics,
            steps={p: float(np.max(np.abs(after[p] - values[p]), initial=0.0)) for p in values},
            rates=rates,
        ))
    return reports


EXACT_EPSILON = 1e-16
"""Adam's epsilon for rate checks: with it, Adam's first update of an element is
``lr * g / (|g| + 3e-15)``, that is ``lr`` for any gradient that is not exactly zero
(Keras's default 1e-7 shrinks the step of elements whose gradient is below about 1e-5,
such as a convolution's bias feeding a BatchNorm that uses batch statistics)."""


def wrong_rates(report: StepReport, tolerance: float = 0.1) -> dict[str, tuple[float, float]]:
    """Variables whose measured learning rate is not the declared one.

    Needs a report of a first Adam step with :data:`EXACT_EPSILON`: every element with a
    gradient then moves by exactly its learning rate, so each variable that moved at all
    must have moved by its declared rate.

    Returns:
        variable path -> (largest absolute change, declared rate), for each variable
        whose change is off by more than `tolerance` (relative).
    """
    return {path: (report.steps[path], rate) for path, rate in report.rates.items()
            if report.steps[path] > 0 and abs(report.steps[path] / rate - 1) > tolerance}


def check_strategy(name: str, params: Mapping[str, Any] | None = None, *,
                   backbones: Iterable[str] = ("vgg16", "resnet50"),
                   plugins: Iterable[Any] = (), engine: Engine | None = None,
                   train_bn: bool = False, epochs: int = 1, learning_rate: float = 1e-3,
                   check_rates: bool = True, rate_tolerance: float = 0.1,
                   eager: bool = False) -> list[StepReport]:
    """Prove a strategy's semantics after real training steps.

    For each backbone, builds a tiny model, then for every stage of the plan takes one
    training step with Adam and checks:

    * every base variable the stage does not train is bit-identical (BatchNorm moving
      statistics included), and every layer it trains changed;
    * BatchNorm moving statistics updated exactly where BatchNorm trains;
    * the head changed;
    * each variable that moved got the learning rate the stage declares
      (``learning_rate * lr_scales[layer]``, the head ``learning_rate``): with a tiny
      epsilon (:data:`EXACT_EPSILON`) Adam's first update moves every element with a
      gradient by exactly its learning rate, whatever the gradient's scale.

    Args:
        name: str. Strategy name.
        params: dict or None. The strategy's own recipe keys.
        backbones: iterable of str. Backbones to check on (a VGG and a ResNet by default).
        plugins: iterable. Plugins to register (where the strategy comes from).
        engine: Engine or None. Use this engine instead of making one.
        train_bn: bool. ``strategy.train_bn``.
        epochs: int. ``train.epochs``, for strategies that split them into stages.
        learning_rate: float. ``optimizer.learning_rate``.
        check_rates: bool. Check the learning rates. Defaults to True.
        rate_tolerance: float. Relative tolerance of the learning-rate check.
        eager: bool. Take the steps eagerly (see :func:`step_each_stage`).

    Returns:
        The :class:`StepReport` of every stage of every backbone.

    Raises:
        AssertionError: naming the backbone, the stage and the offending layers or
            variables.
    """
    engine = engine or Engine(plugins=list(plugins), entry_points=False)
    reports = []
    for backbone in backbones:
        recipe = tiny_recipe(backbone, {"name": name, "train_bn": train_bn, **(params or {})},
                             epochs=epochs, learning_rate=learning_rate)
        run = engine.build(recipe)
        for report in step_each_stage(engine, run, epsilon=EXACT_EPSILON if check_rates else None,
                                      eager=eager):
            where = f"strategy '{name}' on {backbone}, stage '{report.stage.name}'"
            missing = report.expected - report.changed
            frozen = report.changed_variables - report.expected_variables
            stale = report.statistics - report.changed_variables
            assert not frozen, f"{where}: frozen variables changed: {sorted(frozen)[:8]}"
            assert not missing, f"{where}: layers that should train did not change: {sorted(missing)[:8]}"
            assert not stale, f"{where}: BatchNorm statistics did not update: {sorted(stale)[:8]}"
            assert report.head_changed, f"{where}: the head did not change"
            if check_rates:
                wrong = wrong_rates(report, rate_tolerance)
                assert not wrong, (
                    f"{where}: variables did not get their declared learning rate "
                    "(variable: (largest first Adam step, declared rate)): "
                    + ", ".join(f"{n}: ({m:.3g}, {r:.3g})" for n, (m, r) in sorted(wrong.items())[:6])
                )
            reports.append(report)
    return reports


# -- backbones --------------------------------------------------------------------------


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
