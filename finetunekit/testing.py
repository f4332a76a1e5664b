"""Test helpers for finetunekit and its plugins: tiny recipes, weight snapshots, and a
conformance check that proves what a strategy does to the weights.

Third-party authors test their strategy the way the built-ins are tested::

    from finetunekit.testing import check_strategy

    def test_my_strategy():
        check_strategy("my_strategy", {"n": 2}, plugins=[my_plugin])

Everything here uses 32x32 inputs and random weights, so it runs in seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from finetunekit.core.components import Data
from finetunekit.core.engine import Engine, Run
from finetunekit.core.freezing import is_batch_norm
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


@dataclass(frozen=True)
class StepReport:
    """What one training step of one stage changed."""

    stage: Any
    changed: set[str]
    expected: set[str]
    weighted: set[str]
    head_changed: bool


def expected_to_change(run: Run, stage: Any) -> set[str]:
    """Base layers with weights that a step of `stage` should change.

    A layer in ``stage.trainable`` changes if it has weights, unless it is BatchNorm and
    the stage keeps BatchNorm frozen.
    """
    return {
        layer.name for layer in run.base.layers
        if layer.name in stage.trainable and layer.weights
        and (stage.train_bn or not is_batch_norm(layer))
    }


def step_each_stage(engine: Engine, run: Run, data: Data | None = None) -> list[StepReport]:
    """Run one real training step per stage; report which base layers changed."""
    data = data or tiny_data(classes=int(run.model.output_shape[-1]))
    x, y = data.train
    reports = []
    for index, stage in enumerate(run.plan.stages):
        engine.compile_stage(run, index, steps_per_epoch=1)
        before = snapshot(run.base.layers)
        head_before = snapshot([run.head.layer])
        run.model.train_on_batch(x, y)
        changed = changed_layers(before, snapshot(run.base.layers))
        head_changed = bool(changed_layers(head_before, snapshot([run.head.layer])))
        reports.append(StepReport(
            stage=stage, changed=changed, expected=expected_to_change(run, stage),
            weighted={layer.name for layer in run.base.layers if layer.weights},
            head_changed=head_changed,
        ))
    return reports


def check_strategy(name: str, params: Mapping[str, Any] | None = None, *,
                   backbones: Iterable[str] = ("vgg16", "resnet50"),
                   plugins: Iterable[Any] = (), engine: Engine | None = None,
                   train_bn: bool = False) -> list[StepReport]:
    """Prove a strategy's freezing semantics after real training steps.

    For each backbone, builds a tiny model, then for every stage of the plan takes one
    training step and checks: exactly the base layers the stage trains changed; every
    other base weight (BatchNorm moving statistics included) is bit-identical; the head
    changed.

    Args:
        name: str. Strategy name.
        params: dict or None. The strategy's own recipe keys.
        backbones: iterable of str. Backbones to check on (a VGG and a ResNet by default).
        plugins: iterable. Plugins to register (where the strategy comes from).
        engine: Engine or None. Use this engine instead of making one.
        train_bn: bool. ``strategy.train_bn``.

    Returns:
        The :class:`StepReport` of every stage of every backbone.

    Raises:
        AssertionError: naming the backbone, the stage and the offending layers.
    """
    engine = engine or Engine(plugins=list(plugins), entry_points=False)
    reports = []
    for backbone in backbones:
        recipe = tiny_recipe(backbone, {"name": name, "train_bn": train_bn, **(params or {})})
        run = engine.build(recipe)
        for report in step_each_stage(engine, run):
            where = f"strategy '{name}' on {backbone}, stage '{report.stage.name}'"
            missing = report.expected - report.changed
            extra = report.changed - report.expected
            assert not missing, f"{where}: layers that should train did not change: {sorted(missing)[:8]}"
            assert not extra, f"{where}: frozen layers changed: {sorted(extra)[:8]}"
            assert report.head_changed, f"{where}: the head did not change"
            reports.append(report)
    return reports
