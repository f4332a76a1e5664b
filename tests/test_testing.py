"""The conformance helpers plugin authors use: each passes on built-ins and names what is
wrong with a deliberately broken component defined here."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image

from finetunekit import Backbone, Data, DataSource, hookimpl
from finetunekit.testing import check_backbone, check_data_source

# Train without tracing graphs under TensorFlow: the same checks, 2-3x faster.
EAGER = keras.backend.backend() == "tensorflow"


@pytest.mark.parametrize("name", ["vgg16", "mobilenetv2"])  # plain, and BatchNorm
def test_check_backbone_passes_on_built_ins(name):
    report = check_backbone(name, eager=EAGER)
    assert report.size == report.min_size == 32
    assert report.trained


def test_check_backbone_names_layers_missing_from_the_blocks():
    class Broken:
        @hookimpl
        def finetunekit_register_backbones(self, register):
            def build(input_shape, weights):
                inputs = keras.Input(input_shape)
                x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
                return keras.Model(inputs, keras.layers.Conv2D(4, 3, name="c2")(x))

            def blocks(base):  # forgets the last layer
                return [[layer.name for layer in base.layers[:-1]]]

            register(Backbone(name="broken", build=build, blocks=blocks, min_size=8))

    with pytest.raises(AssertionError, match=r"backbone 'broken'.*layers in no block: \['c2'\]"):
        check_backbone("broken", plugins=[Broken()])


def test_check_backbone_names_a_min_size_the_backbone_does_not_build_at():
    class TooSmall:
        @hookimpl
        def finetunekit_register_backbones(self, register):
            def build(input_shape, weights):
                return keras.applications.VGG16(include_top=False, weights=None,
                                                input_shape=tuple(input_shape))

            register(Backbone(name="too_small", build=build, min_size=16))

    with pytest.raises(AssertionError,
                       match="backbone 'too_small' at its min_size 16: building failed"):
        check_backbone("too_small", plugins=[TooSmall()], size=32)


def _folder(root, classes=("cats", "dogs"), per_class=3):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_check_data_source_passes_on_a_folder_of_pngs(tmp_path):
    data = check_data_source("folder", {"train": str(_folder(tmp_path / "train"))})
    assert data.class_names == ["cats", "dogs"] and data.train[0].shape == (6, 32, 32, 3)


def test_check_data_source_passes_on_the_digits():
    data = check_data_source("digits", {"classes": [3, 7, 9], "train_per_class": 2,
                                        "validation_per_class": 2})
    assert data.class_names == ["3", "7", "9"] and len(data.train[1]) == 6


def test_check_data_source_reads_a_dataset_batch_by_batch():
    tf = pytest.importorskip("tensorflow")

    def load(context):
        x = np.random.default_rng(context.seed).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
        y = np.array([0, 1, 2, 0, 1, 2], dtype="int32")
        return Data(train=tf.data.Dataset.from_tensor_slices((x, y)).batch(context.batch_size),
                    class_names=["a", "b", "c"])

    data = check_data_source("batches", plugins=[_source(load, "batches")])
    assert data.class_names == ["a", "b", "c"]


def _source(load, name="broken"):
    class Source:
        @hookimpl
        def finetunekit_register_data_sources(self, register):
            register(DataSource(name=name, load=load))
    return Source()


def _images(n, size=32, dtype=np.uint8):
    return np.zeros((n, size, size, 3), dtype=dtype)


def _random_images(n):  # unseeded: different at every load
    return np.random.default_rng().integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("load, problem", [
    (lambda context: Data(train=(_images(4, dtype="float32"), np.array([0, 1, 0, 1]))),
     "train images must be uint8. Received float32"),
    (lambda context: Data(train=(_images(4, size=16), np.array([0, 1, 0, 1]))),
     r"train images must be \(n, \*input_shape\) = \(n, 32, 32, 3\). Received \(4, 16, 16, 3\)"),
    (lambda context: Data(train=(_images(4), np.array([0, 1, 2, 1])), class_names=["a", "b"]),
     r"labels \[2\] have no class name"),
    (lambda context: Data(train=(_images(4), np.array([0, 0, 0, 0])), class_names=["a", "b"]),
     r"classes without an image: \['b'\]"),
    (lambda context: Data(train=(_random_images(4), np.array([0, 1, 0, 1]))),
     "loading the same recipe twice gave different train data"),
], ids=["float", "size", "label-range", "empty-class", "nondeterministic"])
def test_check_data_source_names_what_is_wrong(load, problem):
    with pytest.raises(AssertionError, match=f"data source 'broken': {problem}"):
        check_data_source("broken", plugins=[_source(load)])
