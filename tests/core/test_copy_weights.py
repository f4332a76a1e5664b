"""Retraining copies a saved model's weights into the recipe's fresh model: matched by
path, or in order by variable name when layers were auto-numbered, a LoRA adapter the
saved (merged) model lacks left as initialised; a model of another shape is refused."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from finetunekit import PersistenceError
from finetunekit.core.weight_matching import copy_weights


def _model(names, widths=(3, 2), lora=False):
    inputs = keras.Input((4,))
    x = inputs
    for name, width in zip(names, widths):
        layer = keras.layers.Dense(width, name=name)
        x = layer(x)
        if lora:
            layer.enable_lora(2)
    return keras.Model(inputs, x)


def test_auto_numbered_layers_are_matched_in_order_and_adapters_kept():
    saved = _model(["dense_48", "dense_49"])  # numbered in another process
    fresh = _model(["dense_1", "dense_2"], lora=True)
    adapters = {w.path: np.array(w) for w in fresh.weights if "lora" in w.path}
    copy_weights(saved, fresh, "model.keras")
    kernels = [np.array(layer.kernel) for layer in fresh.layers[1:]]  # merged view: lora B is 0
    for layer, kernel in zip(saved.layers[1:], kernels):
        np.testing.assert_array_equal(np.array(layer.kernel), kernel)
    for w in fresh.weights:
        if "lora" in w.path:
            np.testing.assert_array_equal(np.array(w), adapters[w.path])


def test_a_model_of_another_shape_is_refused_not_partly_loaded():
    saved = _model(["dense_48", "dense_49"], widths=(3, 2))
    fresh = _model(["dense_1", "dense_2"], widths=(5, 2))
    with pytest.raises(PersistenceError, match=r"does not match its recipe \(4 weights vs 4"):
        copy_weights(saved, fresh, "model.keras")
