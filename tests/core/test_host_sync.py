"""No step's logs reach Python (a device-to-host sync) unless something asks for them.

Keras hands a step's logs to the callbacks through ``python_utils.pythonify_logs``,
which converts each device array to a Python float. The test counts the calls that
receive metrics still on the device, on any thread: JAX's transfer guard cannot show it, as it does
not fire on the CPU and is thread-local, while Keras's asynchronous dispatch converts
on a worker thread.
"""

from __future__ import annotations

import keras
import pytest
from keras.src.utils import python_utils

from finetunekit import Engine, hookimpl
from finetunekit.core.callbacks import RunCallbacks
from finetunekit.core.training import Lifecycle
from finetunekit.testing import tiny_data, tiny_recipe

STEPS, EPOCHS = 4, 2  # 8 images at batch 2; the validation split is 4 images


@pytest.fixture
def conversions(monkeypatch):
    converted: list[dict] = []
    original = python_utils.pythonify_logs

    def counting(logs):
        # metrics on the device; not predict's outputs (the feature cache's pass)
        if "loss" in (logs or {}) and any(keras.ops.is_tensor(v) for v in logs.values()):
            converted.append(dict(logs))
        return original(logs)

    monkeypatch.setattr(python_utils, "pythonify_logs", counting)
    return converted


class Steps:
    """Counts the steps through the sync-free hook the progress bar uses."""

    def __init__(self):
        self.started = []

    @hookimpl
    def finetunekit_batch_start(self, run, stage, batch):
        self.started.append(batch)


class Losses:
    """A plugin that asks for every step's logs."""

    def __init__(self):
        self.losses = []

    @hookimpl
    def finetunekit_batch_end(self, run, stage, batch, logs):
        self.losses.append(logs["loss"])


def _run(*plugins):
    recipe = tiny_recipe(epochs=EPOCHS, batch_size=2)
    return Engine(plugins, entry_points=False).run(recipe, data=tiny_data(n=2 * STEPS),
                                                   save=False)


@pytest.mark.jax
def test_steps_stay_on_the_device_unless_a_plugin_takes_batch_ends(conversions):
    steps = Steps()
    run = _run(steps)
    assert steps.started == list(range(STEPS)) * EPOCHS
    # only epoch-level logs (the epoch's end, the validation's end): none per step
    assert len(conversions) <= 3 * EPOCHS < STEPS * EPOCHS
    assert len(run.history) == EPOCHS
    per_epoch = len(conversions)

    conversions.clear()
    losses = Losses()
    _run(losses)
    assert len(losses.losses) == STEPS * EPOCHS
    assert all(isinstance(loss, float) for loss in losses.losses)
    assert len(conversions) >= STEPS * EPOCHS + per_epoch


def test_lifecycle_is_async_safe_only_if_every_taker_of_batch_ends_is():
    class Batchy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    class SafeBatchy(Batchy):
        async_safe = True

    quiet = Engine(entry_points=False)
    plain = Lifecycle(quiet, None, None, RunCallbacks([keras.callbacks.Callback()], {}))
    assert plain.async_safe and plain.on_train_batch_end._is_default
    assert plain.on_train_batch_begin._is_default and plain.on_test_batch_end._is_default
    user = Lifecycle(quiet, None, None, RunCallbacks([Batchy()], {}))
    assert not user.async_safe and not getattr(user.on_train_batch_end, "_is_default", False)
    assert Lifecycle(quiet, None, None, RunCallbacks([SafeBatchy()], {})).async_safe
    hooked = Lifecycle(Engine([Losses()], entry_points=False), None, None,
                       RunCallbacks([SafeBatchy()], {}))
    assert not hooked.async_safe  # plugins' hooks run in order, on the training thread
