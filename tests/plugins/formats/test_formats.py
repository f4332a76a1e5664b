"""Every format: save, reload, identical predictions; what each holds; retrain from each."""

from __future__ import annotations

import numpy as np
import pytest

from finetunekit import PersistenceError
from finetunekit.testing import tiny_data, tiny_recipe

FORMATS = {"keras": ".keras", "h5": ".h5", "checkpoint": ".ckpt", "weights": ".weights.h5",
           "savedmodel": ".savedmodel"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder with a trained partial-fine-tuning model (recipe.toml beside it)."""
    from finetunekit import Engine

    engine = Engine(entry_points=False)
    folder = tmp_path_factory.mktemp("trained") / "run"
    recipe = tiny_recipe(strategy={"name": "partial", "unfreeze_from": 15}, classes=3,
                         head={"hidden": [8], "dropout": 0.2}, save={"path": str(folder)})
    run = engine.run(recipe, data=tiny_data(classes=3))
    return engine, run, folder


def _predict(model):
    return np.asarray(model.predict(tiny_data(classes=3).train[0], verbose=0))


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_round_trip_gives_identical_predictions(trained, name):
    engine, run, folder = trained
    path = engine.save_model(run.model, folder / f"copy{FORMATS[name]}", name, run=run)
    loaded = engine.load_model(path)
    np.testing.assert_array_equal(_predict(loaded), _predict(run.model))


@pytest.mark.parametrize("name", ["keras", "h5", "checkpoint"])
def test_formats_that_hold_optimizer_state_restore_it(trained, name):
    engine, run, folder = trained
    path = engine.save_model(run.model, folder / f"state{FORMATS[name]}", name, run=run)
    loaded = engine.load_model(path)
    saved = run.model.optimizer.variables
    assert int(loaded.optimizer.iterations.numpy()) == int(run.model.optimizer.iterations.numpy()) > 0
    for a, b in zip(saved, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a.numpy()), np.asarray(b.numpy()))


@pytest.mark.parametrize("name", ["keras", "h5"])
def test_model_formats_hold_trainable_flags(trained, name):
    engine, run, folder = trained
    loaded = engine.load_model(engine.save_model(run.model, folder / f"flags{FORMATS[name]}", name))
    base = loaded.get_layer(run.base.name)
    assert [(l.name, l.trainable) for l in base.layers if l.weights] == \
        [(l.name, l.trainable) for l in run.base.layers if l.weights]


@pytest.mark.parametrize("name", ["keras", "h5", "checkpoint", "weights"])
def test_retrain_starts_from_the_saved_weights(trained, name, tmp_path):
    engine, run, folder = trained
    path = engine.save_model(run.model, folder / f"retrain{FORMATS[name]}", name, run=run)
    same = engine.retrain(path, overrides={"train.epochs": 0, "save.path": None},
                          data=tiny_data(classes=3))
    np.testing.assert_array_equal(_predict(same.model), _predict(run.model))
    further = engine.retrain(path, overrides={"train.epochs": 1, "strategy.name": "full",
                                              "save.path": str(tmp_path / "again")},
                             data=tiny_data(classes=3, seed=1))
    assert not np.array_equal(_predict(further.model), _predict(run.model))
    assert further.plan.stages[0].name == "full"
    assert (tmp_path / "again" / "model.keras").exists()


def test_savedmodel_cannot_be_retrained(trained):
    engine, run, folder = trained
    path = engine.save_model(run.model, folder / "serve.savedmodel", "savedmodel")
    with pytest.raises(PersistenceError, match="cannot train a model loaded from it.*'keras' or\n?.*'checkpoint'"):
        engine.retrain(path, data=tiny_data(classes=3))


def test_savedmodel_folder_as_keras_and_weights_of_another_recipe(trained, tmp_path):
    engine, run, folder = trained
    exported = engine.save_model(run.model, folder / "as.savedmodel", "savedmodel")
    with pytest.raises(PersistenceError, match="is a folder"):
        engine.load_model(exported, format="keras")
    weights = engine.save_model(run.model, folder / "m.weights.h5", "weights")
    with pytest.raises(PersistenceError, match="do not fit the recipe's model"):
        engine.load_model(weights, recipe=tiny_recipe("resnet50", classes=3))
    checkpoint = engine.save_model(run.model, folder / "m.ckpt", "checkpoint", run=run)
    reloaded = engine.load_model(checkpoint, recipe=tiny_recipe("resnet50", classes=3))
    np.testing.assert_array_equal(_predict(reloaded), _predict(run.model))  # it carries its recipe


def test_weights_alone_need_a_recipe(trained, tmp_path):
    engine, run, _ = trained
    path = engine.save_model(run.model, tmp_path / "lonely.weights.h5", "weights")
    with pytest.raises(PersistenceError, match="no recipe.toml beside it"):
        engine.load_model(path)


@pytest.mark.parametrize("name, content", [("h5", b"junk"), ("ckpt", b"PK\x03\x04cut"),
                                           ("weights.h5", b"")])
def test_truncated_or_random_files_are_clear_errors(engine, tmp_path, name, content):
    path = tmp_path / f"bad.{name}"
    path.write_bytes(content)
    with pytest.raises(PersistenceError, match="bad"):
        engine.load_model(path, recipe=tiny_recipe())


def test_retrain_with_lora_starts_from_the_saved_weights(trained):
    engine, run, folder = trained
    path = engine.save_model(run.model, folder / "to_lora.keras", "keras")
    lora = engine.retrain(path, overrides={"train.epochs": 0, "save.path": None,
                                           "strategy.name": "lora", "strategy.rank": 2},
                          data=tiny_data(classes=3))
    np.testing.assert_allclose(_predict(lora.model), _predict(run.model), rtol=1e-5, atol=1e-6)
