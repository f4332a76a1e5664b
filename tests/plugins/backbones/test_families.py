"""The backbone table: 40 rows that match keras.applications, and block patterns that
cut one representative base per family into sensible blocks with the real
:func:`~finetunekit.freezing.group_blocks`.
"""

from __future__ import annotations

import importlib
import re

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from finetunekit.plugins.strategies.freezing import group_blocks  # noqa: E402
from finetunekit.plugins.backbones.families import BACKBONES  # noqa: E402

ROWS = {row["name"]: row for row in BACKBONES}

KEYS = {"name", "constructor", "family", "preprocess", "min_size", "default_size", "block_pattern"}
MODES = {"caffe", "tf", "torch", "none"}

# One constructor per family.
REPRESENTATIVES = [
    "vgg16", "resnet50", "resnet50v2", "mobilenet", "mobilenetv2", "mobilenetv3small",
    "efficientnetb0", "efficientnetv2b0", "densenet121", "xception", "inceptionv3",
    "inceptionresnetv2", "convnexttiny", "nasnetmobile",
]


def _key(pattern, name):
    """The block key of a layer name (None when it does not match)."""
    match = re.match(pattern, name)
    return match.group(1) if match else None


def build(row, size):
    factory = getattr(keras.applications, row["constructor"])
    return factory(weights=None, include_top=False, input_shape=(size, size, 3))


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    yield
    keras.backend.clear_session()


# --- the table ------------------------------------------------------------------------------


def test_table_has_one_row_per_constructor():
    assert isinstance(BACKBONES, tuple)
    assert len(BACKBONES) == 40
    assert len(ROWS) == 40, "names must be unique"
    assert len({row["constructor"] for row in BACKBONES}) == 40
    for row in BACKBONES:
        assert type(row) is dict and set(row) == KEYS, row
        assert callable(getattr(keras.applications, row["constructor"], None)), row["constructor"]
        assert row["name"] == row["constructor"].lower()
        assert row["preprocess"] in MODES
        assert isinstance(row["min_size"], int) and isinstance(row["default_size"], int)
        assert 32 <= row["min_size"] <= row["default_size"]
        assert re.compile(row["block_pattern"]).groups >= 1
    assert set(REPRESENTATIVES) <= set(ROWS)
    assert {ROWS[name]["family"] for name in REPRESENTATIVES} == {row["family"] for row in BACKBONES}


def test_rows_of_a_family_agree():
    by_family = {}
    for row in BACKBONES:
        by_family.setdefault(row["family"], set()).add((row["preprocess"], row["min_size"], row["block_pattern"]))
    assert {family: len(values) for family, values in by_family.items()} == dict.fromkeys(by_family, 1)


_X = np.array([[[[0.0, 128.0, 255.0], [10.0, 200.0, 30.0]]]], dtype="float32")
_MEAN, _STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
_EXPECTED = {
    "caffe": _X[..., ::-1] - np.array([103.939, 116.779, 123.68]),
    "tf": _X / 127.5 - 1.0,
    "torch": (_X / 255.0 - _MEAN) / _STD,
    "none": _X,
}


@pytest.mark.parametrize("name", list(ROWS))
def test_preprocess_mode_matches_keras(name):
    """The mode does what ``keras.applications.<module>.preprocess_input`` does ("none":
    that function is a pass-through because the model normalises itself)."""
    row = ROWS[name]
    module_name = getattr(keras.applications, row["constructor"]).__module__.rsplit(".", 1)[-1]
    module = importlib.import_module(f"keras.applications.{module_name}")
    got = np.asarray(module.preprocess_input(_X.copy()))
    assert np.allclose(got, _EXPECTED[row["preprocess"]], atol=1e-4), (name, got)


def test_group_blocks_follows_the_rule_the_patterns_rely_on():
    """Unmatched names join the current block (the first ones form a stem) and a block
    starts where the key changes, so a key that comes back starts a second block."""
    pattern = r"^(s\d)_"
    names = ["input", "stem_conv", "s1_a", "add_3", "s1_b", "s2_a", "relu_7"]
    assert group_blocks(names, pattern) == [
        ["input", "stem_conv"], ["s1_a", "add_3", "s1_b"], ["s2_a", "relu_7"]]
    assert group_blocks(["s1_a", "s2_a", "s1_b"], pattern) == [["s1_a"], ["s2_a"], ["s1_b"]]


# --- one base per family ----------------------------------------------------------------------


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_min_size_and_blocks(name):
    row = ROWS[name]
    size = max(row["min_size"], 32)

    base = build(row, size)
    assert all(dim >= 1 for dim in base.output.shape[1:3]), base.output.shape
    if size != row["min_size"]:
        assert all(dim >= 1 for dim in build(row, row["min_size"]).output.shape[1:3])

    # One pixel smaller: the constructor refuses, or nothing is left of the feature map.
    try:
        smaller = build(row, row["min_size"] - 1)
    except ValueError:
        pass
    else:
        assert any(dim is not None and dim < 1 for dim in smaller.output.shape[1:3]), smaller.output.shape

    names = [layer.name for layer in base.layers]
    blocks = group_blocks(names, row["block_pattern"])
    keys = [_key(row["block_pattern"], block[0]) for block in blocks]

    assert len(blocks) >= 3, keys
    # Every layer in exactly one block, blocks contiguous and in order.
    assert [n for block in blocks for n in block] == names
    assert len(set(names)) == len(names)
    assert names[-1] in blocks[-1]
    # Only the first block may be an unmatched stem, and no block key comes back later.
    assert all(key is not None for key in keys[1:]), keys
    assert len(set(keys)) == len(keys), keys
    # Every block after the stem holds weights, so "unfreeze the last N blocks" trains something.
    for key, block in zip(keys[1:], blocks[1:]):
        assert any(base.get_layer(n).weights for n in block), (key, block)
