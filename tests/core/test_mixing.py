"""MixUp and CutMix: images and labels mixed together, soft loss, seeded by (seed, epoch),
no feature cache, and an outside plugin adding its own label-mixing augmentation."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from finetunekit import Augmentation, Data, DataError, Engine, hookimpl
from finetunekit.core.components import BuiltHead
from finetunekit.core.errors import RecipeError
from finetunekit.core.mixing import DominantBinaryAccuracy, soft_head
from finetunekit.plugins.augment.basic import cutmix, mixup
from finetunekit.testing import tiny_data, tiny_recipe


def _pair(n=6, size=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    ya = np.eye(classes, dtype=np.float32)[np.arange(n) % classes]
    yb = np.eye(classes, dtype=np.float32)[(np.arange(n) + 1) % classes]
    return a, ya, b, yb


@pytest.mark.jax
def test_mixup_labels_sum_to_one_and_match_the_image_blend():
    a, ya, b, yb = _pair()
    images, labels = mixup(a, ya, b, yb, np.random.default_rng(0), alpha=0.4)
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-6)
    lam = labels[np.arange(len(a)), ya.argmax(1)]  # the share of the first label
    assert np.all((lam > 0) & (lam < 1))
    blend = lam[:, None, None, None] * a + (1 - lam[:, None, None, None]) * b
    assert images.dtype == np.uint8
    assert np.abs(images.astype(np.float32) - blend).max() <= 0.5 + 1e-3


@pytest.mark.jax
def test_cutmix_labels_are_the_pixel_shares_of_each_image():
    a, ya, b, yb = _pair(n=8, size=16)
    b = 255 - a  # every pixel tells which image it came from
    images, labels = cutmix(a, ya, b, yb, np.random.default_rng(3))
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-6)
    from_other = (images != a).all(axis=-1).mean(axis=(1, 2))
    np.testing.assert_allclose(labels[np.arange(8), yb.argmax(1)], from_other, atol=1e-6)
    assert from_other.max() > 0  # some box was pasted


@pytest.mark.jax
@pytest.mark.parametrize("name,classes", [("mixup", 1), ("cutmix", 3)])
def test_a_mixing_recipe_trains_on_soft_labels_without_the_feature_cache(engine, name, classes):
    run = engine.build(tiny_recipe(classes=classes, epochs=2, augment={"name": name}))
    assert run.mix is not None and run.augment is None
    data = tiny_data(n=8, classes=classes)
    epoch = run.mix.epoch(data, 4, 0, seed=0)
    x, y = epoch.train.arrays()
    assert y.shape == (8, classes) and y.dtype == np.float32
    soft = y if classes > 1 else np.concatenate([y, 1 - y], axis=1)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    assert not np.array_equal(x, data.train[0])
    vx, vy = epoch.validation.arrays()
    np.testing.assert_array_equal(vx, data.validation[0])  # never mixed
    assert set(np.unique(vy)) <= {0.0, 1.0}
    if classes > 1:
        assert isinstance(run.head.loss, keras.losses.CategoricalCrossentropy)
        assert isinstance(run.head.metrics[0], keras.metrics.CategoricalAccuracy)
    else:
        assert run.head.loss == "binary_crossentropy"
        assert isinstance(run.head.metrics[0], DominantBinaryAccuracy)

    before = engine.feature_cache.computed
    engine.fit(run, data)
    assert engine.feature_cache.computed == before  # frozen base, yet no cache
    assert [row["epoch"] for row in run.history] == [1, 2]
    assert all(np.isfinite(row["loss"]) and "val_accuracy" in row for row in run.history)


def test_mixing_depends_on_seed_and_epoch_only(engine):
    run = engine.build(tiny_recipe(augment={"name": "mixup"}))
    data = tiny_data(n=8)
    first = run.mix.epoch(data, 4, 2, seed=5)
    again = engine.build(tiny_recipe(augment={"name": "mixup"})).mix.epoch(data, 4, 2, seed=5)
    np.testing.assert_array_equal(first.train.arrays()[0], again.train.arrays()[0])
    np.testing.assert_array_equal(first.train.arrays()[1], again.train.arrays()[1])
    other = run.mix.epoch(data, 4, 3, seed=5)
    assert not np.array_equal(first.train.arrays()[1], other.train.arrays()[1])


def test_dominant_binary_accuracy_counts_the_larger_share():
    metric = DominantBinaryAccuracy()
    metric.update_state(np.array([[0.7], [0.3], [0.6]]), np.array([[0.9], [0.2], [0.1]]))
    assert float(metric.result()) == pytest.approx(2 / 3)


def test_a_pipeline_is_mixed_batch_by_batch_and_validation_only_made_soft(engine):
    import tensorflow as tf

    run = engine.build(tiny_recipe(classes=3, augment={"name": "cutmix"}))
    data = tiny_data(n=8, classes=3)
    (x, y), (vx, vy) = data.train, data.validation
    pipeline = Data(train=tf.data.Dataset.from_tensor_slices((x, y)).batch(4),
                    validation=tf.data.Dataset.from_tensor_slices((vx, vy)).batch(4))
    epoch = run.mix.epoch(pipeline, 4, 0, seed=0)
    batches = [tuple(np.asarray(t) for t in b) for b in epoch.train]
    assert [len(b[0]) for b in batches] == [4, 4] and len(epoch.train) == 2
    mixed = np.concatenate([b[1] for b in batches])
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, rtol=1e-6)
    assert not np.array_equal(np.concatenate([b[0] for b in batches]), x)
    vx_out, vy_out = (np.asarray(t) for t in next(iter(epoch.validation)))
    np.testing.assert_array_equal(vx_out, vx)
    np.testing.assert_array_equal(vy_out, np.eye(3)[vy])
    again = list(run.mix.epoch(pipeline, 4, 0, seed=0).train)  # same (seed, epoch)
    np.testing.assert_array_equal(np.asarray(again[1][0]), batches[1][0])

    engine.fit(run, pipeline)
    assert np.isfinite(run.history[-1]["loss"]) and "val_accuracy" in run.history[-1]


def test_mixing_needs_image_label_batches_and_a_crossentropy_head(engine):
    import tensorflow as tf

    run = engine.build(tiny_recipe(augment={"name": "mixup"}))
    x, y = tiny_data(n=4).train
    weighted = tf.data.Dataset.from_tensor_slices((x, y, np.ones(4))).batch(2)
    with pytest.raises(DataError, match=r"needs batches of \(images, labels\). Received elements"):
        run.mix.epoch(Data(train=weighted), 2, 0, seed=0)
    with pytest.raises(DataError, match=r"Received a batch of tuple with 3 items"):
        run.mix.batch((x, y, np.ones(4)), 0, 0, 0, mix=True)
    with pytest.raises(DataError, match=r"a tf.data.Dataset or a PyDataset. Received list"):
        run.mix.epoch(Data(train=[(x, y)]), 2, 0, seed=0)
    with pytest.raises(RecipeError, match=r"augment.name = \"mixup\".*Received a head with loss 'mse'"):
        soft_head(BuiltHead(layer=None, loss="mse"), "mixup")


def test_a_pydataset_keeps_its_length_and_is_mixed_by_batch_index(engine):
    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            x, y = tiny_data(n=8).train
            return x[index * 4:(index + 1) * 4], y[index * 4:(index + 1) * 4]

    run = engine.build(tiny_recipe(augment={"name": "mixup"}))
    mixed = run.mix.epoch(Data(train=Batches()), 4, 1, seed=0).train
    assert len(mixed) == 2
    x1, y1 = mixed[1]
    np.testing.assert_array_equal(mixed[1][0], x1)  # batch 1 mixes the same whenever read
    assert y1.shape == (4, 1) and not np.array_equal(x1, Batches()[1][0])
    engine.fit(run, Data(train=Batches()))
    assert np.isfinite(run.history[-1]["loss"])


def test_a_model_trained_with_mixup_saves_and_loads(engine, tmp_path):
    recipe = tiny_recipe(augment={"name": "mixup"}, save={"path": str(tmp_path / "run")})
    run = engine.run(recipe, data=tiny_data(n=8))
    loaded = engine.load_model(tmp_path / "run")
    x = tiny_data(n=4).validation[0]
    np.testing.assert_allclose(loaded(x, training=False), run.model(x, training=False),
                               atol=1e-6)


def test_an_outside_plugin_adds_its_own_label_mixing_augmentation():
    calls = []

    class SwapHalf:
        @hookimpl
        def finetunekit_register_augmentations(self, register):
            def mix(images, labels, other_images, other_labels, rng, share=0.5):
                calls.append(len(images))
                return other_images, share * labels + (1 - share) * other_labels

            register(Augmentation(name="swap", build=lambda input_shape, **p: None, mix=mix,
                                  params={}))

    engine = Engine(plugins=[SwapHalf()], entry_points=False)
    run = engine.build(tiny_recipe(classes=2, augment={"name": "swap"}))
    engine.fit(run, tiny_data(n=8, classes=2))
    assert calls == [4, 4]  # two batches of the one epoch
    assert isinstance(run.head.loss, keras.losses.CategoricalCrossentropy)


def test_a_resumed_mixup_run_ends_with_the_weights_of_an_uninterrupted_one(engine, tmp_path):
    recipe = tiny_recipe(epochs=3, augment={"name": "mixup"},
                         save={"path": str(tmp_path / "run"), "keep_checkpoints": 3})
    data = tiny_data(n=8)
    whole = [np.array(w) for w in engine.run(recipe, data=data).model.weights]
    checkpoints = sorted((tmp_path / "run" / "checkpoints").iterdir())
    for later in checkpoints[1:]:  # as if killed after the first epoch
        later.unlink()
    resumed = Engine(entry_points=False).resume(tmp_path / "run", data=data)
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    for a, b in zip(whole, resumed.model.weights):
        np.testing.assert_array_equal(a, np.array(b))


def test_one_hot_labels_and_float_pipeline_images_are_refused_before_training(engine):
    import tensorflow as tf

    run = engine.build(tiny_recipe(classes=3, augment={"name": "mixup"}))
    x, y = tiny_data(n=6, classes=3).train
    one_hot = Data(train=(x, np.eye(3, dtype=np.float32)[y]))
    with pytest.raises(DataError, match=r"class indices, shape \(n,\).*Received labels of shape \(6, 3\)"):
        engine.fit(run, one_hot)
    assert run.history == []
    floats = Data(train=tf.data.Dataset.from_tensor_slices((x / 255.0, y)).batch(3))
    with pytest.raises(DataError, match=r"uint8 pixels.*Received a batch of float64 images"):
        engine.fit(run, floats)
