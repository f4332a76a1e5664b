"""Saved models load anywhere Keras does: core Keras layers only (preprocessing too),
compile information naming Keras classes only; old files with ``finetunekit>Preprocess``
still load; a file whose plugin is missing names the package to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from finetunekit import PersistenceError
from finetunekit.testing import tiny_data, tiny_recipe

HELPER = Path(__file__).parents[2] / "helpers" / "plain_keras.py"


def test_saved_models_load_and_predict_identically_without_finetunekit(engine, tmp_path):
    """MixUp on a sigmoid head compiles the soft-label DominantBinaryAccuracy; VGG's
    caffe preprocessing flips channels: both must load in plain Keras."""
    recipe = tiny_recipe(augment={"name": "mixup"})
    run = engine.run(recipe, data=tiny_data(n=4), save=False)
    images = tiny_data(n=4).train[0]
    np.save(tmp_path / "x.npy", images)
    expected = run.model.predict(images, verbose=0)
    for fmt, suffix in (("keras", ".keras"), ("h5", ".h5")):
        path = engine.save_model(run.model, tmp_path / f"model{suffix}", fmt)
        out = tmp_path / f"{fmt}.npy"
        done = subprocess.run([sys.executable, "-I", str(HELPER), str(path),
                               str(tmp_path / "x.npy"), str(out)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        np.testing.assert_array_equal(np.load(out), expected)
    # the compile information the file records is Keras's own, and it is put back
    assert type(run.model._compile_config.config["metrics"][0]).__name__ == "DominantBinaryAccuracy"


@pytest.mark.parametrize("mode, module", [("caffe", "vgg16"), ("tf", "mobilenet_v2"),
                                          ("torch", "densenet"), ("none", "efficientnet")])
def test_preprocessing_is_core_keras_and_matches_preprocess_input(mode, module):
    from finetunekit import preprocessing

    images = np.random.default_rng(0).integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)
    layer = preprocessing(mode)
    got = np.asarray(layer(images))
    want = getattr(keras.applications, module).preprocess_input(images.astype("float32"))
    np.testing.assert_allclose(got, np.asarray(want), atol=1e-5)
    assert not layer.weights
    assert all(type(sub).__module__.startswith("keras.") for sub in layer.layers)


def test_a_model_saved_with_the_old_preprocess_layer_still_loads(engine, tmp_path):
    from finetunekit import Preprocess

    inputs = keras.Input((4, 4, 3), dtype="uint8")
    model = keras.Model(inputs, keras.layers.Flatten()(Preprocess("caffe")(inputs)))
    model.save(tmp_path / "old.keras")
    loaded = engine.load_model(tmp_path / "old.keras")
    images = np.arange(48, dtype=np.uint8).reshape(1, 4, 4, 3)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), model.predict(images, verbose=0))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_missing_plugin_layer_names_the_package_to_install(engine, tmp_path, suffix):
    @keras.saving.register_keras_serializable(package="fancy_plugin")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((3,))
    keras.Model(inputs, Doubler()(inputs)).save(tmp_path / f"m{suffix}")
    keras.saving.get_custom_objects().pop("fancy_plugin>Doubler")  # as if not installed
    with pytest.raises(PersistenceError, match=r"fancy_plugin>Doubler.*pip install fancy_plugin"):
        engine.load_model(tmp_path / f"m{suffix}", format=suffix[1:])
