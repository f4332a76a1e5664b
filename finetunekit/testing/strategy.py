"""``check_strategy``: one real training step per stage proves what a strategy trains."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from finetunekit.core.components import Data
from finetunekit.core.engine import Engine, Run
from finetunekit.plugins.strategies.freezing import is_batch_norm, is_norm_parameter
from finetunekit.testing.tiny import changed_layers, snapshot, snapshot_variables, tiny_data, tiny_recipe


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
