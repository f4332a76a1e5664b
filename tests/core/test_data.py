"""Data: folders of class sub-folders, arrays, and the embedded digits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from finetunekit import Data, DataError
from finetunekit.testing import tiny_recipe


def _folder(root, classes=("cats", "dogs"), per_class=3, mode="RGB"):
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new(mode, (40, 50), color=i * 40).save(root / name / f"{i}.png")
    return root


def _recipe(**data):
    return tiny_recipe(data={"source": "folder", **data})


def test_folder_images_are_uint8_at_the_input_size(engine, tmp_path):
    train = _folder(tmp_path / "train", mode="L")
    data = engine.load_data(_recipe(train=str(train), validation_split=0.5))
    x, y = data.train
    assert x.dtype == np.uint8 and x.shape[1:] == (32, 32, 3)
    assert data.class_names == ["cats", "dogs"]
    assert len(x) + len(data.validation[0]) == 6
    assert set(np.concatenate([y, data.validation[1]])) == {0, 1}


def test_train_and_validation_with_different_classes(engine, tmp_path):
    train = _folder(tmp_path / "train")
    validation = _folder(tmp_path / "validation", classes=("cats", "birds"))
    with pytest.raises(DataError, match=r"differ from the training folders"):
        engine.load_data(_recipe(train=str(train), validation=str(validation)))


def test_empty_class_folder_and_missing_folder(engine, tmp_path):
    train = _folder(tmp_path / "train")
    (train / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        engine.load_data(_recipe(train=str(train)))
    with pytest.raises(DataError, match="not a folder"):
        engine.load_data(_recipe(train=str(tmp_path / "nowhere")))


def test_unreadable_image_is_skipped_and_reported_or_named_when_strict(engine, tmp_path):
    train = _folder(tmp_path / "train")
    (train / "cats" / "broken.jpg").write_text("not an image")
    data = engine.load_data(_recipe(train=str(train)))
    assert len(data.train[0]) == 6
    assert data.report["skipped_by_reason"] == {"not_an_image": 1}
    with pytest.raises(DataError, match=r"broken.jpg"):
        engine.load_data(_recipe(train=str(train), strict=True))


def test_class_count_must_match_the_head(engine, tmp_path):
    train = _folder(tmp_path / "train", classes=("a", "b", "c"))
    recipe = _recipe(train=str(train))
    with pytest.raises(DataError, match=r"3 classes.*head.classes = 3"):
        engine.run(recipe, save=False)


def test_arrays_of_the_wrong_kind_are_refused(engine):
    x = np.zeros((4, 32, 32, 3), "float32")
    with pytest.raises(DataError, match="uint8"):
        engine.run(tiny_recipe(), data=Data(train=(x, np.zeros(4))), save=False)
    with pytest.raises(DataError, match=r"shape \(n, 32, 32, 3\)"):
        engine.run(tiny_recipe(), data=Data(train=(np.zeros((4, 8, 8, 3), "uint8"), np.zeros(4))),
                   save=False)
    with pytest.raises(DataError, match=r"labels must lie in 0..1"):
        engine.run(tiny_recipe(), data=Data(train=(np.zeros((4, 32, 32, 3), "uint8"), np.arange(4))),
                   save=False)


def test_npz_arrays_source(engine, tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "train.npz", x=x, y=np.arange(6) % 2)
    data = engine.load_data(tiny_recipe(data={"source": "arrays", "train": str(tmp_path / "train.npz")}))
    np.testing.assert_array_equal(data.train[0], x)
    with pytest.raises(DataError, match="'x'"):
        np.savez(tmp_path / "bad.npz", images=x)
        engine.load_data(tiny_recipe(data={"source": "arrays", "train": str(tmp_path / "bad.npz")}))


def test_digits_are_real_images_relabelled(engine):
    recipe = tiny_recipe(classes=3, data={"source": "digits", "classes": [7, 8, 9],
                                          "train_per_class": 5, "validation_per_class": 4})
    data = engine.load_data(recipe)
    x, y = data.train
    assert x.shape == (15, 32, 32, 3) and x.dtype == np.uint8
    assert sorted(np.bincount(y)) == [5, 5, 5]
    assert len(data.validation[0]) == 12 and data.class_names == ["7", "8", "9"]
    assert x.max() > 200 and x.min() == 0  # real strokes on a dark background


def test_tf_data_pipeline_trains(engine):
    tf = pytest.importorskip("tensorflow")
    x = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices((x, np.arange(8) % 2)).batch(4)
    run = engine.run(tiny_recipe(optimizer="sgd"), data=Data(train=dataset), save=False)
    assert len(run.history) == 1 and "loss" in run.history[0]
