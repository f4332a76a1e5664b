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


# -- schedules ---------------------------------------------------------------------------


def _rates(engine, run, optimizer, steps, steps_per_epoch=5):
    """Compile stage 0 of `run` with another [optimizer] section; the rate at `steps`."""
    run.recipe = tiny_recipe(epochs=4, learning_rate=1e-3, optimizer=optimizer)
    engine.compile_stage(run, 0, steps_per_epoch=steps_per_epoch)
    rate = run.model.optimizer._learning_rate
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        return [float(rate(step)) for step in steps]
    return [float(keras.ops.convert_to_numpy(rate))] * len(steps)


def test_each_schedule_follows_its_formula(engine):
    run = engine.build(tiny_recipe(epochs=4, learning_rate=1e-3))
    approx = pytest.approx
    # 4 epochs of 5 steps
    assert _rates(engine, run, {"schedule": "constant"}, [0, 19]) == approx([1e-3, 1e-3])
    assert _rates(engine, run, {"schedule": "step", "step_every_epochs": 2, "step_factor": 0.5},
                  [0, 9, 10, 19]) == approx([1e-3, 1e-3, 5e-4, 5e-4])
    assert _rates(engine, run, {"schedule": "exponential", "decay_rate": 0.5},
                  [0, 5, 10]) == approx([1e-3, 5e-4, 2.5e-4])
    warm = _rates(engine, run, {"schedule": "cosine", "warmup_epochs": 1.0,
                                "min_learning_rate": 1e-5}, [0, 1, 5, 20])
    assert warm == approx([0.0, 2e-4, 1e-3, 1e-5])
    assert _rates(engine, run, {"schedule": "cosine", "warmup_steps": 2}, [1]) == approx([5e-4])
    cycle = _rates(engine, run, {"schedule": "one_cycle", "pct_start": 0.25, "div_factor": 10.0,
                                 "final_div_factor": 100.0}, [0, 5, 20])
    assert cycle == approx([1e-4, 1e-3, 1e-6])
    assert _rates(engine, run, {"schedule": "plateau"}, [0]) == approx([1e-3])
    assert [type(c).__name__ for c in run.stage_callbacks] == ["PlateauSchedule"]


@pytest.mark.parametrize("optimizer, message", [
    ({"schedule": "cosine", "step_factor": 0.5},
     "'optimizer.step_factor' belongs to schedule 'step', but optimizer.schedule = 'cosine'"),
    ({"schedule": "cosine", "warmup_epochs": 1.0, "warmup_steps": 3}, "not both"),
    ({"schedule": "cosine", "carry_state": True}, "carry_state"),
    ({"schedule": "cosin"}, "Did you mean 'cosine'"),
])
def test_schedule_keys_are_checked(optimizer, message):
    from finetunekit import RecipeError

    with pytest.raises(RecipeError, match=message):
        tiny_recipe(optimizer=optimizer)


def test_a_misspelt_schedule_key_gets_a_did_you_mean(engine):
    from finetunekit import RecipeError

    with pytest.raises(RecipeError, match="Did you mean 'warmup_epochs'"):
        engine.validate(tiny_recipe(optimizer={"schedule": "cosine", "warmup_epoch": 1.0}))


def test_plateau_lowers_the_rate_across_one_epoch_fits(engine):
    from finetunekit.testing import tiny_data

    # a rate too small to move val_loss by Keras's min_delta: every epoch is a plateau
    recipe = tiny_recipe(epochs=3, learning_rate=1e-9, optimizer={
        "schedule": "plateau", "plateau_patience": 1, "plateau_factor": 0.5})
    run = engine.run(recipe, data=tiny_data(n=4), save=False)
    rates = [row["learning_rate"] for row in run.history]
    assert rates == pytest.approx([1e-9, 1e-9, 5e-10])


# -- optimizers from Python, steps, carried state -------------------------------------------


def test_an_optimizer_instance_is_cloned_per_stage_and_recorded(engine, tmp_path):
    import json
    import tomllib

    from finetunekit.testing import tiny_data

    given = keras.optimizers.SGD(0.5, momentum=0.7, nesterov=True)
    recipe = tiny_recipe(strategy={"name": "two_stage", "lr_factor": 0.1}, epochs=2,
                         learning_rate=0.01, save={"path": str(tmp_path / "run")})
    run = engine.run(recipe, data=tiny_data(n=4), optimizer=given)
    used = run.model.optimizer
    assert type(used) is keras.optimizers.SGD and used is not given
    assert used.momentum == pytest.approx(0.7) and used.nesterov
    assert float(used.learning_rate) == pytest.approx(0.001)  # the stage's rate
    assert not given.built  # the instance given is never trained itself
    saved = tomllib.loads((tmp_path / "run" / "recipe.toml").read_text())
    assert saved["optimizer"]["name"] == "custom" and "weight_decay" not in saved["optimizer"]
    record = json.loads((tmp_path / "run" / "optimizer.json").read_text())
    assert [s["stage"] for s in record["stages"]] == ["linear_probe", "fine_tune"]
    assert {s["class"] for s in record["stages"]} == {"keras.src.optimizers.sgd.SGD"}
    assert [s["config"]["learning_rate"] for s in record["stages"]] == pytest.approx([0.01, 0.001])


def test_an_optimizer_callable_gets_each_stage(engine):
    from finetunekit.testing import tiny_data

    seen = []

    def make(stage, steps_per_epoch):
        seen.append((stage.name, steps_per_epoch))
        return keras.optimizers.RMSprop(2e-5)

    run = engine.run(tiny_recipe(), data=tiny_data(n=4), save=False, optimizer=make)
    assert seen == [("feature_extraction", 1)]
    assert type(run.model.optimizer) is keras.optimizers.RMSprop


def test_a_recorded_custom_optimizer_needs_it_again(engine):
    from finetunekit import RecipeError

    run = engine.build(tiny_recipe(optimizer="custom"))
    with pytest.raises(RecipeError, match="given from Python"):
        engine.compile_stage(run, 0, steps_per_epoch=1)


def test_an_optimizer_build_that_names_steps_gets_them():
    from finetunekit import Engine, Optimizer, PluginError, hookimpl

    seen = []

    class Plugin:
        @hookimpl
        def finetunekit_register_optimizers(self, register):
            def build(learning_rate, weight_decay, steps):
                seen.append((steps.per_epoch, steps.total, steps.stage.name))
                return keras.optimizers.Adam(learning_rate)
            register(Optimizer(name="stepwise", build=build))

    engine = Engine([Plugin()], entry_points=False)
    run = engine.build(tiny_recipe(optimizer="stepwise", epochs=3))
    engine.compile_stage(run, 0, steps_per_epoch=7)
    assert seen == [(7, 21, "feature_extraction")]

    class Clash:
        @hookimpl
        def finetunekit_register_optimizers(self, register):
            from finetunekit import Param
            register(Optimizer(name="clash", build=lambda lr, wd, steps=1: None,
                               params={"steps": Param(int, 1)}))

    with pytest.raises(PluginError, match="the engine passes to build"):
        Engine([Clash()], entry_points=False).components()


def test_carry_state_keeps_the_step_count_and_moments_across_stages(engine):
    from finetunekit.testing import tiny_data

    def run_with(carry):
        recipe = tiny_recipe(strategy={"name": "two_stage"}, epochs=3,
                             optimizer={"carry_state": carry})
        return engine.run(recipe, data=tiny_data(n=4), save=False)

    carried, fresh = run_with(True), run_with(False)
    # 1 step per epoch: the probe's 1 and the fine-tune's 2
    assert int(carried.model.optimizer.iterations) == 3
    assert int(fresh.model.optimizer.iterations) == 2


def test_carry_state_copies_slots_by_variable_and_keeps_the_new_rate():
    from finetunekit.core.schedules import carry_state

    shared, new = keras.Variable([1.0, 2.0], name="shared"), keras.Variable([3.0], name="new")
    previous = keras.optimizers.Adam(0.1)
    previous.apply_gradients([(keras.ops.ones((2,)), shared)])
    optimizer = keras.optimizers.Adam(0.01)
    assert carry_state(previous, optimizer, [shared, new]) > 0
    slots = {v.name: v.numpy() for v in optimizer.variables}
    before = {v.name: v.numpy() for v in previous.variables}
    assert int(optimizer.iterations) == 1
    assert float(optimizer.learning_rate) == pytest.approx(0.01)
    assert np.array_equal(slots["shared_momentum"], before["shared_momentum"])
    assert not slots["new_momentum"].any()  # a variable new to the stage starts from zero
