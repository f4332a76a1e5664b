"""train.precision: mixed layers with a float32 head output, loss scaling for float16,
Keras's global dtype policy left as it was, and engines that do not interfere."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from finetunekit import BuiltHead, Engine, Head, Param, hookimpl
from finetunekit.core.errors import PluginError, RecipeError
from finetunekit.core.feature_cache import FeatureCache
from finetunekit.testing import tiny_data, tiny_recipe

MIXED = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def _conv(base):
    return next(layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D))


@pytest.mark.jax
@pytest.mark.parametrize("precision", sorted(MIXED))
def test_mixed_run_computes_in_half_keeps_float32_variables_and_output(precision):
    before = keras.config.dtype_policy().name
    engine = Engine(entry_points=False)
    run = engine.run(tiny_recipe(strategy="full", train={"precision": precision}),
                     data=tiny_data(), save=False)
    assert keras.config.dtype_policy().name == before
    assert _conv(run.base).compute_dtype == MIXED[precision]
    assert {v.dtype for v in run.model.trainable_variables} == {"float32"}
    assert keras.backend.standardize_dtype(run.model.outputs[0].dtype) == "float32"
    prediction = run.model.predict(tiny_data().train[0], verbose=0)
    assert prediction.dtype == np.float32 and np.isfinite(run.history[-1]["loss"])


@pytest.mark.jax
def test_only_float16_gets_loss_scaling(engine):
    kinds = {}
    for precision in ("float32", "mixed_float16", "mixed_bfloat16"):
        run = engine.build(tiny_recipe(train={"precision": precision}))
        engine.compile_stage(run, 0)
        kinds[precision] = isinstance(run.model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert kinds == {"float32": False, "mixed_float16": True, "mixed_bfloat16": False}


@pytest.mark.jax
def test_two_engines_with_different_precisions_do_not_interfere():
    half, full = Engine(entry_points=False), Engine(entry_points=False)
    half_run = half.build(tiny_recipe(train={"precision": "mixed_float16"}))
    full_run = full.build(tiny_recipe())
    half.compile_stage(half_run, 0)  # after the float32 build: still mixed
    full.compile_stage(full_run, 0)
    assert _conv(half_run.base).compute_dtype == "float16"
    assert _conv(full_run.base).compute_dtype == "float32"
    assert isinstance(half_run.model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert not isinstance(full_run.model.optimizer, keras.optimizers.LossScaleOptimizer)


def test_policy_is_restored_when_building_fails(engine):
    before = keras.config.dtype_policy().name
    with pytest.raises(RecipeError):
        engine.run(tiny_recipe(backbone={"weights": "/no/such.h5"},
                               train={"precision": "mixed_float16"}), data=tiny_data(), save=False)
    assert keras.config.dtype_policy().name == before


def test_a_user_policy_is_kept_and_does_not_leak_into_a_float32_recipe(engine):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        run = engine.build(tiny_recipe())
        assert _conv(run.base).compute_dtype == "float32"
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    finally:
        keras.config.set_dtype_policy(previous)


def test_feature_cache_keys_on_precision(engine):
    images = tiny_data().train[0]
    keys = {FeatureCache.key(engine.build(tiny_recipe(train={"precision": p})), images)
            for p in ("float32", "mixed_float16")}
    assert len(keys) == 2


def test_cached_head_trains_under_mixed_precision():
    engine = Engine(entry_points=False)
    run = engine.run(tiny_recipe(epochs=2, train={"precision": "mixed_float16"}),
                     data=tiny_data(), save=False)
    assert engine.feature_cache.computed == 2
    assert all(np.isfinite(row["loss"]) for row in run.history)


def test_a_head_with_half_output_is_a_clear_error():
    class HalfHead:
        @hookimpl
        def finetunekit_register_heads(self, register):
            def build(feature_shape, classes):
                layers = [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(1)]
                return BuiltHead(layer=keras.Sequential(layers), loss="mse", metrics=[])
            register(Head(name="half", build=build, params={"classes": Param(int, 1)}))

    engine = Engine([HalfHead()], entry_points=False)
    recipe = tiny_recipe(head={"name": "half"}, train={"precision": "mixed_float16"})
    with pytest.raises(PluginError, match=r"Head 'half' .* outputs float16 .*dtype=\"float32\""):
        engine.build(recipe)
    engine.build(tiny_recipe(head={"name": "half"}))  # float32: fine


def test_unknown_precision_names_the_key():
    with pytest.raises(RecipeError, match="train.precision"):
        tiny_recipe(train={"precision": "float16"})


def test_mixed_float16_checkpoint_resumes_and_saved_model_reloads_mixed(tmp_path):
    data = tiny_data()
    recipe = tiny_recipe(epochs=2, train={"precision": "mixed_float16"},
                         save={"path": str(tmp_path / "run"), "keep_checkpoints": 2})
    engine = Engine(entry_points=False)
    whole = [w.numpy() for w in engine.run(recipe, data=data).model.weights]
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("epoch-*.ckpt"))
    with np.load(checkpoints[-1]) as archive:
        assert "loss_scale" in str(archive["meta"])  # the scaler's state travels too
    checkpoints[-1].unlink()
    resumed = Engine(entry_points=False).resume(tmp_path / "run", data=data)
    for expected, got in zip(whole, [w.numpy() for w in resumed.model.weights]):
        np.testing.assert_array_equal(got, expected)
    loaded = Engine(entry_points=False).load_model(tmp_path / "run")
    assert _conv(loaded.get_layer(resumed.base.name)).compute_dtype == "float16"
    np.testing.assert_allclose(loaded.predict(data.train[0], verbose=0),
                               resumed.model.predict(data.train[0], verbose=0), rtol=1e-3)
