"""The feature cache and augmentation: which stages cache, same head weights either way,
invalidation, and augmentation that acts on training batches only.

The cache on disk (shards, killed writes, eviction) is tested in test_feature_store.py."""

from __future__ import annotations

import numpy as np
import pytest

from finetunekit import Engine
from finetunekit.core.feature_cache import FeatureCache
from finetunekit.testing import tiny_data, tiny_recipe


def _head_weights(run):
    return [w.numpy() for w in run.head.layer.weights]


def test_cached_frozen_stage_gives_the_same_head_as_the_composed_model():
    data = tiny_data(n=16)
    results = {}
    for mode in ("auto", "off"):
        engine = Engine(entry_points=False)
        run = engine.run(tiny_recipe(epochs=3, head={"hidden": [8], "dropout": 0.3},
                                     train={"feature_cache": mode}), data=data, save=False)
        results[mode] = (_head_weights(run), [row["loss"] for row in run.history],
                         engine.feature_cache.computed)
    (cached, cached_loss, computed), (plain, plain_loss, none) = results["auto"], results["off"]
    assert computed == 2 and none == 0  # train and validation features, once each
    for a, b in zip(cached, plain):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cached_loss, plain_loss, rtol=1e-5)


def test_stages_that_train_the_base_or_augment_do_not_cache(engine):
    engine.run(tiny_recipe(strategy="full"), data=tiny_data(), save=False)
    engine.run(tiny_recipe(augment={"name": "basic"}), data=tiny_data(), save=False)
    assert engine.feature_cache.computed == 0


def test_cache_key_changes_with_data_weights_and_input(engine, tmp_path):
    run = engine.build(tiny_recipe())
    images = tiny_data().train[0]
    key = FeatureCache.key(run, images)
    assert FeatureCache.key(run, images.copy()) == key
    assert FeatureCache.key(run, images[::-1].copy()) != key
    run.base.weights[0].assign(run.base.weights[0] * 2)
    assert FeatureCache.key(run, images) != key
    other = engine.build(tiny_recipe("resnet50"))
    assert FeatureCache.key(other, images) != key


@pytest.mark.parametrize("name", ["basic", "randaugment"])
def test_augmentation_changes_training_batches_not_predictions(engine, name):
    run = engine.build(tiny_recipe(augment={"name": name, "seed": 1}))
    assert run.augment is not None and run.model.layers[1] is run.augment
    x = tiny_data().train[0]
    np.testing.assert_array_equal(run.augment(x, training=False), x.astype("float32"))
    assert not np.array_equal(np.asarray(run.augment(x, training=True)), x.astype("float32"))
    np.testing.assert_array_equal(run.model.predict(x, verbose=0), run.model.predict(x, verbose=0))


def test_unknown_augmentation_key(engine):
    from finetunekit import RecipeError

    with pytest.raises(RecipeError, match="Unknown key 'augment.rotate' for augmentation 'basic'.*'rotation'"):
        engine.validate(tiny_recipe(augment={"name": "basic", "rotate": 0.2}), data=False)


def test_a_model_trained_through_the_cache_exports(engine, tmp_path):
    run = engine.run(tiny_recipe(), data=tiny_data(), save=False)
    assert engine.feature_cache.computed == 2
    path = engine.save_model(run.model, tmp_path / "served.savedmodel", "savedmodel")
    x = tiny_data().train[0]
    np.testing.assert_allclose(engine.load_model(path).predict(x, verbose=0),
                               run.model.predict(x, verbose=0), rtol=1e-6)
