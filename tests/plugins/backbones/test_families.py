"""The backbone family table: 40 rows that match keras.applications, and block patterns
that cut one representative base per family into sensible blocks.

Self-contained: the table is loaded by file path, so this runs whatever state the
``finetunekit`` package is in, and the grouping rule is re-implemented here.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

_FAMILIES_PY = Path(__file__).resolve().parents[3] / "finetunekit" / "plugins" / "backbones" / "families.py"


def _load_families():
    spec = importlib.util.spec_from_file_location("_finetunekit_backbone_families", _FAMILIES_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FAMILIES


FAMILIES = _load_families()
ROWS = {row["name"]: row for row in FAMILIES}

KEYS = {"name", "constructor", "family", "preprocess", "min_size", "default_size", "block_pattern", "notes"}
MODES = {"caffe", "tf", "torch", "none"}

# One constructor per family.
REPRESENTATIVES = [
    "vgg16", "resnet50", "resnet50v2", "mobilenet", "mobilenetv2", "mobilenetv3small",
    "efficientnetb0", "efficientnetv2b0", "densenet121", "xception", "inceptionv3",
    "inceptionresnetv2", "convnexttiny", "nasnetmobile",
]


def group_blocks(names, pattern):
    """The grouping rule: key = ``re.match(pattern, name).group(1)`` or None; a None key
    joins the current block (names before the first match form a stem block); a new
    block starts whenever the key changes. Returns ``[(key, [names...]), ...]``."""
    regex = re.compile(pattern)
    blocks = []
    for name in names:
        match = regex.match(name)
        key = match.group(1) if match else None
        if not blocks or (key is not None and key != blocks[-1][0]):
            blocks.append((key, [name]))
        else:
            blocks[-1][1].append(name)
    return blocks


def build(row, size):
    factory = getattr(keras.applications, row["constructor"])
    return factory(weights=None, include_top=False, input_shape=(size, size, 3))


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    yield
    keras.backend.clear_session()


# --- the table ------------------------------------------------------------------------------


def test_table_has_one_row_per_constructor():
    assert isinstance(FAMILIES, tuple)
    assert len(FAMILIES) == 40
    assert len(ROWS) == 40, "names must be unique"
    assert len({row["constructor"] for row in FAMILIES}) == 40
    for row in FAMILIES:
        assert type(row) is dict and set(row) == KEYS, row
        assert callable(getattr(keras.applications, row["constructor"], None)), row["constructor"]
        assert row["name"] == row["constructor"].lower()
        assert row["preprocess"] in MODES
        assert isinstance(row["min_size"], int) and isinstance(row["default_size"], int)
        assert 32 <= row["min_size"] <= row["default_size"]
        assert re.compile(row["block_pattern"]).groups >= 1
        assert isinstance(row["notes"], str)
    assert set(REPRESENTATIVES) <= set(ROWS)
    assert {ROWS[name]["family"] for name in REPRESENTATIVES} == {row["family"] for row in FAMILIES}


def test_rows_of_a_family_agree():
    by_family = {}
    for row in FAMILIES:
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
    keys = [key for key, _ in blocks]

    assert len(blocks) >= 3, keys
    # Every layer in exactly one block, blocks contiguous and in order.
    assert [n for _, block in blocks for n in block] == names
    assert len(set(names)) == len(names)
    assert names[-1] in blocks[-1][1]
    # Only the first block may be an unmatched stem, and no block key comes back later.
    assert all(key is not None for key in keys[1:]), keys
    assert len(set(keys)) == len(keys), keys
    # Every block after the stem holds weights, so "unfreeze the last N blocks" trains something.
    for key, block in blocks[1:]:
        assert any(base.get_layer(n).weights for n in block), (key, block)
