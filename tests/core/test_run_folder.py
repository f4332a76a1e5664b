"""The .keras format: identical predictions after a round trip; bad files, clear errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from finetunekit import PersistenceError
from finetunekit.testing import tiny_data, tiny_recipe


@pytest.mark.jax
def test_keras_round_trip_gives_identical_predictions_and_flags(engine, tmp_path):
    run = engine.run(tiny_recipe(strategy={"name": "partial", "unfreeze_from": 15}, classes=3),
                     data=tiny_data(classes=3), save=False)
    path = engine.save_model(run.model, tmp_path / "model.keras")
    loaded = engine.load_model(path)
    x = tiny_data(classes=3).train[0]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), run.model.predict(x, verbose=0))
    base = loaded.get_layer(run.base.name)
    flags = [(layer.name, layer.trainable) for layer in run.base.layers if layer.weights]
    assert [(layer.name, layer.trainable) for layer in base.layers if layer.weights] == flags
    assert sum(trainable for _, trainable in flags) == 3
    assert loaded.optimizer.iterations.numpy() == run.model.optimizer.iterations.numpy() > 0


def test_run_folder_loads_by_folder_name(engine, tmp_path):
    recipe = tiny_recipe(save={"path": str(tmp_path / "run")})
    run = engine.run(recipe, data=tiny_data())
    loaded = engine.load_model(tmp_path / "run")
    x = tiny_data().train[0]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), run.model.predict(x, verbose=0))


def test_run_refuses_a_non_empty_folder_before_training(engine, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(PersistenceError, match="not empty.*overwrite"):
        engine.run(tiny_recipe(save={"path": str(tmp_path / "run")}), data=tiny_data())
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    engine.run(tiny_recipe(save={"path": str(tmp_path / "run"), "overwrite": True}), data=tiny_data())
    assert (tmp_path / "run" / "model.keras").exists()


@pytest.mark.parametrize("content", [b"not a model at all", b"PK\x03\x04truncated"])
def test_garbage_file_is_a_clear_error(engine, tmp_path, content):
    path = tmp_path / "broken.keras"
    path.write_bytes(content)
    with pytest.raises(PersistenceError, match="broken.keras"):
        engine.load_model(path)


def test_unknown_suffix_and_missing_file(engine, tmp_path):
    with pytest.raises(PersistenceError, match="No such model file"):
        engine.load_model(tmp_path / "none.keras")
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(PersistenceError, match=r"Known suffixes: \.ckpt, \.h5, \.keras"):
        engine.load_model(tmp_path / "model.bin")


def test_lambda_layer_refused_in_safe_mode(engine, tmp_path):
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    path = engine.save_model(model, tmp_path / "lambda.keras")
    with pytest.raises(PersistenceError, match="safe_mode=False"):
        engine.load_model(path)
    assert engine.load_model(path, safe_mode=False) is not None


def test_save_is_atomic_and_keeps_the_old_file_on_failure(engine, tmp_path):
    class Unsaveable(keras.Model):
        def save(self, *args, **kwargs):
            raise OSError("disk full")

    good = engine.save_model(engine.build(tiny_recipe()).model, tmp_path / "m.keras")
    before = good.read_bytes()
    with pytest.raises(Exception, match="disk full"):
        engine.save_model(Unsaveable(), good)
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


@pytest.mark.jax
def test_a_check_plugin_sees_the_written_file_and_may_refuse_it(tmp_path):
    from finetunekit import Engine, hookimpl

    seen = []

    class Refuser:
        @hookimpl
        def finetunekit_check_saved_model(self, model, path, format, run, reload):
            loaded = reload()  # the file written, under its temporary name
            seen.append((path, format.name, len(loaded.weights) == len(model.weights)))
            if len(seen) > 1:
                raise PersistenceError("refused by the check")

    engine = Engine(entry_points=False, plugins=[Refuser()])
    model = engine.build(tiny_recipe()).model
    good = engine.save_model(model, tmp_path / "m.keras")
    assert seen == [(good, "keras", True)]
    before = good.read_bytes()
    with pytest.raises(PersistenceError, match="refused by the check"):
        engine.save_model(model, good)
    assert good.read_bytes() == before  # the previous file stays, the refused one is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]
