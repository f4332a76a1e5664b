"""Optimizers and schedules: what the recipe says is what the compiled model gets."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from finetunekit.testing import tiny_recipe


@pytest.mark.parametrize("name, cls, extra", [
    ("rmsprop", keras.optimizers.RMSprop, {"rho": 0.8}),
    ("adam", keras.optimizers.Adam, {"beta_1": 0.8}),
    ("adamw", keras.optimizers.AdamW, {}),
    ("sgd", keras.optimizers.SGD, {"momentum": 0.5, "nesterov": True}),
])
def test_each_optimizer_is_built_with_the_recipes_values(engine, name, cls, extra):
    recipe = tiny_recipe(optimizer={"name": name, "weight_decay": 0.01, **extra}, learning_rate=2e-5)
    run = engine.build(recipe)
    engine.compile_stage(run, 0, steps_per_epoch=10)
    opt = run.model.optimizer
    assert type(opt) is cls
    assert float(opt.learning_rate.numpy()) == pytest.approx(2e-5)
    assert opt.weight_decay == pytest.approx(0.01)
    for key, value in extra.items():
        assert getattr(opt, key) == pytest.approx(value)


def test_cosine_schedule_decays_over_the_stage(engine):
    recipe = tiny_recipe(epochs=4, learning_rate=1e-3, optimizer={"schedule": "cosine"})
    run = engine.build(recipe)
    engine.compile_stage(run, 0, steps_per_epoch=5)
    # the optimizer's public config holds its schedule, serialised
    config = run.model.optimizer.get_config()["learning_rate"]
    schedule = keras.optimizers.schedules.deserialize(config)
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    rates = [float(schedule(step)) for step in (0, 10, 20)]
    assert rates[0] == pytest.approx(1e-3) and rates[2] == pytest.approx(0.0, abs=1e-9)
    assert rates[0] > rates[1] > rates[2]


def test_unknown_optimizer_key_is_named(engine):
    from finetunekit import RecipeError

    with pytest.raises(RecipeError, match="Unknown key 'optimizer.momentum' for optimizer 'adam'"):
        engine.validate(tiny_recipe(optimizer={"momentum": 0.9}))


def test_same_seed_same_training(engine):
    from finetunekit.testing import tiny_data

    first = engine.run(tiny_recipe(strategy="full"), data=tiny_data(), save=False)
    second = engine.run(tiny_recipe(strategy="full"), data=tiny_data(), save=False)
    x = tiny_data().train[0]
    np.testing.assert_array_equal(first.model.predict(x, verbose=0), second.model.predict(x, verbose=0))
