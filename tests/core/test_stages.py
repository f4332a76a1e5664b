"""What a Stage can ask for beyond layers: per-variable learning rates and variable
filters. Measured from real updates, with an adaptive optimizer."""

from __future__ import annotations

import numpy as np
import pytest

from finetunekit import Engine, Plan, Stage, Strategy, hookimpl
from finetunekit.plugins.strategies.freezing import is_bias
from finetunekit.testing import snapshot, tiny_data, tiny_recipe


def _engine_with(plan_fn):
    class Plugin:
        @hookimpl
        def finetunekit_register_strategies(self, register):
            register(Strategy(name="custom", plan=plan_fn))

    return Engine(plugins=[Plugin()], entry_points=False)


def _one_step(engine, optimizer="adam"):
    run = engine.build(tiny_recipe(strategy="custom", optimizer=optimizer, learning_rate=1e-3))
    engine.compile_stage(run, 0, steps_per_epoch=1)
    before = snapshot(run.base.layers)
    x, y = tiny_data().train
    run.model.train_on_batch(x, y)
    after = snapshot(run.base.layers)
    return run, before, after


@pytest.mark.jax
@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_lr_scales_are_true_per_variable_learning_rates(optimizer):
    engine = _engine_with(lambda context: Plan((Stage(
        "custom", 1, frozenset({"block5_conv2", "block5_conv3"}), context.learning_rate,
        lr_scales={"block5_conv3": 0.1}),)))
    run, before, after = _one_step(engine, optimizer)
    step = {name: np.abs(after[name][0] - before[name][0]).max() for name in ("block5_conv2", "block5_conv3")}
    # an adaptive optimizer's first step is about lr in size, whatever the gradient's scale
    assert step["block5_conv2"] == pytest.approx(1e-3 if optimizer == "adam" else 1e-3 / np.sqrt(0.1), rel=0.05)
    assert step["block5_conv3"] / step["block5_conv2"] == pytest.approx(0.1, rel=0.02)


def test_variable_filter_trains_only_the_chosen_variables_and_is_undone_next_stage():
    engine = _engine_with(lambda context: Plan((
        Stage("custom", 1, frozenset(context.layer_names), context.learning_rate, variables=is_bias),
        Stage("all", 1, frozenset(context.layer_names), context.learning_rate),
    )))
    run, before, after = _one_step(engine)
    kernel_moved = [n for n in before if before[n] and not np.array_equal(before[n][0], after[n][0])]
    bias_moved = [n for n in before if len(before[n]) > 1 and not np.array_equal(before[n][1], after[n][1])]
    assert kernel_moved == []
    assert len(bias_moved) == 13  # every VGG16 conv layer's bias
    engine.compile_stage(run, 1, steps_per_epoch=1)
    assert all(v.trainable for layer in run.base.layers for v in layer.weights)
