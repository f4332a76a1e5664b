"""The plugin contract: discovery, isolation, errors that name the plugin and the hook."""

from __future__ import annotations

import sys
import types

import keras
import pytest

from finetunekit import (
    Engine,
    Optimizer,
    Param,
    Plan,
    PluginError,
    Stage,
    Strategy,
    UnknownComponentError,
    hookimpl,
)
from finetunekit.plugins import BUILTINS as BUILTIN_PLUGINS
from finetunekit.testing import tiny_data, tiny_recipe


def _strategy_plugin(name="only_head"):
    class Plugin:
        @hookimpl
        def finetunekit_register_strategies(self, register):
            register(Strategy(name=name, plan=lambda context: Plan(
                (Stage(name, context.epochs, frozenset(), context.learning_rate),))))

    return Plugin()


def test_builtins_are_registered_like_any_plugin(engine):
    plugins = {row["plugin"] for row in engine.components()}
    assert plugins <= set(BUILTIN_PLUGINS)
    kinds = {row["kind"] for row in engine.components()}
    assert kinds == {"backbone", "strategy", "head", "optimizer", "format", "data", "augmentation"}
    assert engine.catalogue.plugin_of("strategy", "partial") == "finetunekit.plugins.strategies.basic"


def test_two_engines_do_not_see_each_others_plugins():
    first = Engine(plugins=[_strategy_plugin()], entry_points=False)
    second = Engine(entry_points=False)
    assert "only_head" in first.catalogue.names("strategy")
    assert "only_head" not in second.catalogue.names("strategy")
    with pytest.raises(UnknownComponentError, match="only_head"):
        second.build(tiny_recipe(strategy="only_head"))


def test_unknown_component_lists_known_names_and_suggests(engine):
    with pytest.raises(UnknownComponentError) as info:
        engine.build(tiny_recipe(strategy="parital"))
    message = str(info.value)
    assert "Unknown strategy (strategy.name) 'parital'" in message
    assert "feature_extraction, full, " in message and ", partial, " in message
    assert "Did you mean 'partial'?" in message


def test_duplicate_component_name_names_both_plugins():
    engine = Engine(plugins=[_strategy_plugin("partial")], entry_points=False)
    with pytest.raises(PluginError) as info:
        engine.catalogue
    message = str(info.value)
    assert "Duplicate strategy name 'partial'" in message
    assert "plugin 'finetunekit.plugins.strategies.basic' already did" in message
    assert info.value.plugin.endswith("Plugin") and info.value.hook == "finetunekit_register_strategies"


def test_plugin_raising_in_a_catalogue_hook_is_named():
    class Broken:
        @hookimpl
        def finetunekit_register_heads(self, register):
            raise RuntimeError("boom")

    engine = Engine(plugins=[Broken()], entry_points=False)
    with pytest.raises(PluginError, match=r"Broken' failed in hook 'finetunekit_register_heads': RuntimeError: boom"):
        engine.catalogue


def test_component_raising_during_a_run_names_its_plugin_and_the_function():
    class Flaky:
        @hookimpl
        def finetunekit_register_optimizers(self, register):
            def build(learning_rate, weight_decay):
                raise ZeroDivisionError("bad optimizer")
            register(Optimizer(name="flaky", build=build))

    engine = Engine(plugins=[Flaky()], entry_points=False)
    with pytest.raises(PluginError) as info:
        engine.run(tiny_recipe(optimizer="flaky"), data=tiny_data(), save=False)
    assert info.value.hook == "optimizer.build"
    assert info.value.plugin.endswith("Flaky")
    assert "Optimizer 'flaky' (plugin '" in str(info.value)
    assert "failed in build(): ZeroDivisionError: bad optimizer" in str(info.value)


def test_observer_raising_is_named_not_the_engine():
    class Noisy:
        @hookimpl
        def finetunekit_epoch_end(self, run, epoch):
            raise KeyError("missing")

    engine = Engine(plugins=[Noisy()], entry_points=False)
    with pytest.raises(PluginError, match=r"Noisy' failed in hook 'finetunekit_epoch_end': KeyError"):
        engine.run(tiny_recipe(), data=tiny_data(), save=False)


def test_hook_with_a_typo_is_refused_at_registration():
    class Typo:
        @hookimpl
        def finetunekit_register_stratgies(self, register):
            pass

    with pytest.raises(PluginError, match="finetunekit_register_stratgies.*Did you mean 'finetunekit_register_strategies'"):
        Engine(plugins=[Typo()], entry_points=False)


def test_a_removed_action_hook_is_refused_with_the_way_to_migrate():
    class Old:
        @hookimpl
        def finetunekit_plan_strategy(self, strategy, context, params):
            return None

    with pytest.raises(PluginError) as info:
        Engine(plugins=[Old()], entry_points=False)
    message = str(info.value)
    assert "finetunekit_plan_strategy" in message and "Strategy" in message
    assert "CHANGELOG.md" in message


def _keyed_strategy(plan, params):
    class Plugin:
        @hookimpl
        def finetunekit_register_strategies(self, register):
            register(Strategy(name="mine", plan=plan, params=params))
    return Plugin()


def _plan(context, **keys):
    return Plan((Stage("mine", 1, frozenset(), 0.1),))


@pytest.mark.parametrize("plan, params, problem", [
    (lambda context, n: _plan(context), {"m": Param(int, 1)}, "does not accept declared key(s) ['m']"),
    (lambda context, n: _plan(context), {}, "needs argument(s) ['n'] that are not declared keys"),
    (_plan, {"n": Param(int, "three")}, "key 'n' has a default that does not fit"),
    (_plan, {"n": Param(int, 5, max=3)}, "'strategy.n' must be <= 3"),
    (_plan, {"train_bn": Param(bool, False)}, "keys the engine owns in [strategy]: ['train_bn']"),
])
def test_a_component_that_could_only_fail_later_is_refused_when_registered(plan, params, problem):
    engine = Engine(plugins=[_keyed_strategy(plan, params)], entry_points=False)
    with pytest.raises(PluginError) as info:
        engine.catalogue
    assert problem in str(info.value)
    assert "strategy 'mine'" in str(info.value) and info.value.plugin.endswith("Plugin")


def test_declared_keys_reach_a_function_that_takes_them_by_name_or_by_kwargs():
    def by_name(context, n=1):
        return Plan((Stage(f"n{n}", 1, frozenset(), 0.1),))

    for plan in (by_name, lambda context, **keys: by_name(context, **keys)):
        engine = Engine(plugins=[_keyed_strategy(plan, {"n": Param(int, 1)})], entry_points=False)
        run = engine.build(tiny_recipe(strategy={"name": "mine", "n": 3}))
        assert [s.name for s in run.plan.stages] == ["n3"]


def test_export_hook_gives_the_model_to_save_and_a_wrapper_sees_it(tmp_path):
    seen = []

    class Exporter:
        @hookimpl
        def finetunekit_export_model(self, model, format, run):
            inputs = keras.Input(model.input_shape[1:])
            return keras.Model(inputs, keras.layers.Flatten(name="exported")(inputs))

    class Watcher:
        @hookimpl(wrapper=True)
        def finetunekit_export_model(self, model, format):
            result = yield
            seen.append((format.name, result.layers[-1].name))
            return result

    engine = Engine(plugins=[Exporter(), Watcher()], entry_points=False)
    run = engine.build(tiny_recipe())
    engine.save_model(run.model, tmp_path / "m.keras")
    assert seen == [("keras", "exported")]
    assert keras.saving.load_model(tmp_path / "m.keras").layers[-1].name == "exported"


def test_wrong_result_type_names_the_component_and_what_was_expected():
    from finetunekit import Head

    class Bad:
        @hookimpl
        def finetunekit_register_heads(self, register):
            register(Head(name="bad", build=lambda feature_shape, classes: "not a head",
                          params={"classes": Param(int, 1)}))

    engine = Engine(plugins=[Bad()], entry_points=False)
    with pytest.raises(PluginError, match=r"Head 'bad' \(plugin '.*Bad'\): build\(\) returned str; "
                                          r"expected a finetunekit.BuiltHead"):
        engine.build(tiny_recipe(head={"name": "bad"}))


def test_plugin_given_as_a_dotted_module_path(monkeypatch):
    module = types.ModuleType("my_test_plugin")

    @hookimpl
    def finetunekit_register_strategies(register):
        register(Strategy(name="from_module", plan=lambda context: Plan(
            (Stage("m", 1, frozenset(), 0.1),))))

    module.finetunekit_register_strategies = finetunekit_register_strategies
    monkeypatch.setitem(sys.modules, "my_test_plugin", module)
    engine = Engine(plugins=["my_test_plugin"], entry_points=False)
    assert engine.catalogue.plugin_of("strategy", "from_module") == "my_test_plugin"


def test_unimportable_plugin_module():
    with pytest.raises(PluginError, match="Could not import plugin module 'no_such_plugin_xyz'"):
        Engine(plugins=["no_such_plugin_xyz"], entry_points=False)


def test_lifecycle_hooks_fire_in_order():
    events = []

    class Observer:
        @hookimpl
        def finetunekit_run_start(self, run):
            events.append("run_start")

        @hookimpl
        def finetunekit_stage_start(self, stage, index):
            events.append(f"stage_start {index}")

        @hookimpl
        def finetunekit_epoch_end(self, epoch, logs):
            events.append(f"epoch_end {epoch} {'loss' in logs}")

        @hookimpl
        def finetunekit_stage_end(self, index, history):
            events.append(f"stage_end {index} {len(history)}")

        @hookimpl
        def finetunekit_run_end(self, run):
            events.append(f"run_end {len(run.history)}")

    engine = Engine(plugins=[Observer()], entry_points=False)
    engine.run(tiny_recipe(epochs=2), data=tiny_data(), save=False)
    assert events == ["run_start", "stage_start 0", "epoch_end 1 True", "epoch_end 2 True",
                      "stage_end 0 2", "run_end 2"]


@pytest.mark.parametrize("augment", ["none", "mixup"])
def test_a_head_layer_without_compute_output_shape_builds_and_trains(augment):
    # a plain Layer subclass: Keras infers its output by tracing call(); the engine must
    # not ask it for compute_output_shape (which such a layer does not implement)
    from finetunekit import BuiltHead, Head, Param

    class MeanHead(keras.layers.Layer):
        def build(self, input_shape):
            self.dense = keras.layers.Dense(3, activation="softmax", dtype="float32")
            self.dense.build((None, input_shape[-1]))

        def call(self, features):
            return self.dense(keras.ops.mean(features, axis=(1, 2)))

    class Plugin:
        @hookimpl
        def finetunekit_register_heads(self, register):
            def build(feature_shape, classes):
                return BuiltHead(layer=MeanHead(), loss="sparse_categorical_crossentropy",
                                 metrics=["accuracy"])
            register(Head(name="mean", build=build, params={"classes": Param(int, 3)}))

    engine = Engine([Plugin()], entry_points=False)
    recipe = tiny_recipe(head={"name": "mean"}, classes=3, epochs=1, strategy="full",
                         augment={"name": augment})
    run = engine.run(recipe, data=tiny_data(classes=3), save=False)
    assert run.model.output_shape == (None, 3)
    assert len(run.history) == 1


def test_plugins_can_be_blocked_by_name_and_autoload_turned_off(monkeypatch, tmp_path):
    # an installed package whose entry point would fail: autoload off skips it
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[finetunekit]\nbroken = no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="FINETUNEKIT_DISABLE_PLUGINS=broken"):
        Engine()
    monkeypatch.setenv("FINETUNEKIT_DISABLE_PLUGINS", "broken")
    assert "partial" in Engine().catalogue.names("strategy")
    monkeypatch.setenv("FINETUNEKIT_DISABLE_PLUGINS", "finetunekit.plugins.strategies.lora")
    monkeypatch.setenv("FINETUNEKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    names = Engine().catalogue.names("strategy")
    assert "lora" not in names and "partial" in names


def test_an_entry_point_raising_system_exit_is_a_named_error(monkeypatch, tmp_path):
    dist = tmp_path / "exiting_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: exiting-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[finetunekit]\nexiting = exiting_plugin_xyz\n")
    (tmp_path / "exiting_plugin_xyz.py").write_text("raise SystemExit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match=r"Entry point 'exiting'.*SystemExit: 3"):
        Engine()
