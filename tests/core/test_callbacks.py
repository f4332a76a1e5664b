"""The run's callbacks: which state travels in checkpoints, and what is refused."""

from __future__ import annotations

import json

import keras
import pytest

from finetunekit.core.callbacks import (
    RunCallbacks,
    callback_state,
    restore_callback_state,
)


def test_keras_plateau_counters_travel_and_caller_callbacks_are_keyed_by_position():
    plateau = keras.callbacks.ReduceLROnPlateau(patience=3)
    plateau.wait, plateau.best, plateau.cooldown_counter = 2, 0.25, 1
    saved = json.loads(json.dumps(callback_state(plateau)))
    fresh = keras.callbacks.ReduceLROnPlateau(patience=3)
    restore_callback_state(fresh, saved)
    assert (fresh.wait, fresh.best, fresh.cooldown_counter) == (2, 0.25, 1)
    assert callback_state(keras.callbacks.CSVLogger("x.csv")) is None  # its state is its own

    class Builtin(keras.callbacks.Callback):
        state_key = "train.early_stopping"

    callbacks = RunCallbacks([Builtin(), plateau, keras.callbacks.CSVLogger("x.csv")], {})
    assert callbacks.keys() == ["train.early_stopping", "0:ReduceLROnPlateau", "1:CSVLogger"]


def test_something_that_is_no_keras_callback_is_refused_by_position():
    with pytest.raises(TypeError, match=r"callbacks\[1\] must be a keras.callbacks.Callback. "
                                        "Received: builtin_function_or_method"):
        RunCallbacks([keras.callbacks.Callback(), print], {})
