"""The keras-cv augmentation (optional extra): real keras-cv layers where it is installed
and TensorFlow is the backend; a clear error on another backend or without keras-cv."""

from __future__ import annotations

import sys

import keras
import numpy as np
import pytest

from finetunekit import RecipeError
from finetunekit.plugins.augment.kerascv import require_keras_cv
from finetunekit.testing import tiny_data, tiny_recipe


def _recipe(**augment):
    return tiny_recipe(augment={"name": "keras_cv", **augment})


@pytest.mark.jax
def test_another_backend_gets_a_clear_error():
    with pytest.raises(RecipeError, match=r"TensorFlow only. Received KERAS_BACKEND=jax"):
        require_keras_cv("jax")
    if keras.backend.backend() == "jax":  # the recipe itself refuses under JAX
        from finetunekit import Engine

        with pytest.raises(RecipeError, match="TensorFlow only"):
            Engine(entry_points=False).build(_recipe())


def test_missing_keras_cv_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_cv", None)  # import keras_cv -> ImportError
    with pytest.raises(RecipeError, match=r'pip install "finetunekit\[keras-cv\]"'):
        require_keras_cv("tensorflow")


def test_unknown_layer_is_refused_when_the_recipe_is_checked(engine):
    with pytest.raises(RecipeError, match=r"augment.layers.*unknown: \['GridMsk'\]"):
        engine.validate(_recipe(layers=["GridMsk"]), data=False)


def test_keras_cv_layers_augment_training_batches_only_and_survive_saving(engine, tmp_path):
    pytest.importorskip("keras_cv")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("keras-cv's augmentation layers are TensorFlow-only")
    recipe = _recipe(layers=["GridMask", "RandomHue"], seed=1).with_overrides(
        {"save.path": str(tmp_path / "run")})
    run = engine.build(recipe)
    assert type(run.augment.layer.layers[0]).__module__.startswith("keras_cv")
    x = tiny_data(n=4).train[0]
    np.testing.assert_array_equal(run.augment(x, training=False), x.astype("float32"))
    assert not np.array_equal(np.asarray(run.augment(x, training=True)), x.astype("float32"))

    before = engine.feature_cache.computed
    run = engine.run(recipe, data=tiny_data(n=8))
    assert engine.feature_cache.computed == before  # random augmentation: no cache
    loaded = engine.load_model(tmp_path / "run")
    np.testing.assert_allclose(loaded(x, training=False), run.model(x, training=False), atol=1e-6)
