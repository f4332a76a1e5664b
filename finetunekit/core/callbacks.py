"""Keras callbacks over a whole run, stopping, and the state that travels in checkpoints.

The engine trains one Keras ``fit`` call per epoch and recompiles at every stage, so a
callback handed to ``fit`` directly would see ``on_train_begin`` every epoch (Keras's
``EarlyStopping`` would forget its patience) and a new model every stage. Instead,
:class:`RunCallbacks` holds the callbacks for the whole run and is driven by the engine's
:class:`~finetunekit.core.training.Lifecycle`: ``on_train_begin`` once, epoch and batch
calls with the run's global epoch number, ``on_train_end`` once, and ``self.model`` the
model that trains the current stage.

Each ``fit`` gets a :class:`StageCallbacks`, which hands a batch's logs to Python only
when some callback implements that batch method (see there): by default a step's loss
stays on the device, and the training loss is checked for NaN once per epoch
(:func:`check_finite`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import keras
import numpy as np

from finetunekit.core.errors import NonFiniteLossError, RecipeError

_KERAS_STATE: tuple[tuple[type, tuple[str, ...]], ...] = (
    (keras.callbacks.EarlyStopping, ("wait", "best", "best_epoch", "stopped_epoch")),
    (keras.callbacks.ReduceLROnPlateau, ("wait", "best", "cooldown_counter")),
)
"""Keras callbacks whose counters the engine saves itself (their weights it does not)."""


def callback_state(callback: Any) -> Any:
    """What to checkpoint of a callback: its ``get_state()``, the counters of Keras's
    ``EarlyStopping`` and ``ReduceLROnPlateau``, or None (its state is its own)."""
    if callable(getattr(callback, "get_state", None)):
        return callback.get_state()
    for kind, names in _KERAS_STATE:
        if isinstance(callback, kind):
            return {name: _plain(getattr(callback, name, None)) for name in names}
    return None


def restore_callback_state(callback: Any, state: Any) -> None:
    """Give a callback back what :func:`callback_state` took."""
    if state is None:
        return
    if callable(getattr(callback, "set_state", None)):
        callback.set_state(state)
        return
    for name, value in state.items():
        setattr(callback, name, value)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class RunCallbacks:
    """Keras callbacks called as if the whole run, every stage, were one ``fit``.

    Args:
        callbacks: iterable of ``keras.callbacks.Callback``.
        params: dict. Keras's ``callback.params`` (``epochs`` over the run, ``steps``).

    At a stage boundary ``self.model`` becomes the next stage's freshly compiled model:
    a callback acting on the optimizer (``ReduceLROnPlateau``) acts on the current
    stage's optimizer, and a callback that keeps weights (Keras's ``EarlyStopping``
    with ``restore_best_weights``) must not carry them across stages, whose models may
    differ (a cached stage trains the head alone); the recipe's
    ``[train.early_stopping] restore_best`` keeps the whole model's weights instead.
    """

    def __init__(self, callbacks: Iterable[Any], params: dict[str, Any]):
        self.callbacks = list(callbacks)
        for position, callback in enumerate(self.callbacks):
            if not isinstance(callback, keras.callbacks.Callback):
                raise TypeError(
                    f"callbacks[{position}] must be a keras.callbacks.Callback. Received: "
                    f"{type(callback).__name__}. Subclass keras.callbacks.Callback.")
        for callback in self.callbacks:
            callback.set_params(params)
        self.started = False

    def keys(self) -> list[str]:
        """Each callback's key in checkpoints: its ``state_key`` (the built-ins'), else its
        position among the caller's callbacks and its class (``"0:EarlyStopping"``)."""
        keys, position = [], 0
        for callback in self.callbacks:
            key = getattr(callback, "state_key", None)
            if key is None:
                key, position = f"{position}:{type(callback).__name__}", position + 1
            keys.append(key)
        return keys

    def begin(self, model: Any, state: dict[str, Any] | None = None) -> None:
        """Set the model and, the first time, call ``on_train_begin`` and restore `state`
        (from a checkpoint) after it, as Keras's callbacks reset themselves there."""
        for callback in self.callbacks:
            callback.set_model(model)
        if self.started:
            return
        self.started = True
        for callback in self.callbacks:
            callback.on_train_begin()
        for key, callback in zip(self.keys(), self.callbacks):
            restore_callback_state(callback, (state or {}).get(key))

    def end(self) -> None:
        """``on_train_end``, once, at the end of the run."""
        if self.started:
            for callback in self.callbacks:
                callback.on_train_end()

    def call(self, method: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, method)(*args)

    def epoch_end(self, epoch: int, logs: dict[str, float], model: Any) -> str | None:
        """``on_epoch_end`` on each; the reason to stop if one set ``model.stop_training``."""
        reason = None
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)
            if reason is None and getattr(model, "stop_training", False):
                reason = getattr(callback, "stop_reason", None) or (
                    f"{type(callback).__name__} set model.stop_training")
        return reason

    def state(self) -> dict[str, Any]:
        return {key: state for key, callback in zip(self.keys(), self.callbacks)
                if (state := callback_state(callback)) is not None}


BATCH_METHODS: dict[str, tuple[str, ...]] = {
    "on_train_batch_begin": ("on_train_batch_begin", "on_batch_begin"),
    "on_train_batch_end": ("on_train_batch_end", "on_batch_end"),
    "on_test_batch_begin": ("on_test_batch_begin",),
    "on_test_batch_end": ("on_test_batch_end",),
}
"""Keras's batch methods a ``fit`` calls, each with the methods that implement it (a
callback's default ``on_train_batch_end`` calls its ``on_batch_end``)."""


def implements(callback: Any, method: str) -> bool:
    """Whether `callback` does something in the batch `method` (one of
    :data:`BATCH_METHODS`): Keras marks ``Callback``'s own empty methods ``_is_default``."""
    return not all(getattr(getattr(callback, name), "_is_default", False)
                   for name in BATCH_METHODS[method])


class StageCallbacks(keras.callbacks.CallbackList):
    """The callbacks of one stage's ``fit`` calls, handed to ``fit`` as they are.

    Keras's own list converts every step's logs to Python floats, which waits for the
    step to finish (a device-to-host sync on JAX, on a GPU under TensorFlow): on the
    training thread, or, when every callback is ``async_safe`` or leaves the batch
    methods empty, on a worker thread, one task per step. This list skips a batch
    method that none of its callbacks implements (:func:`implements`), so by default
    no step's logs leave the device; when one does implement it (a lifecycle plugin's
    ``finetunekit_batch_end``, a user's Keras callback), Keras's own dispatch runs,
    asynchronous if every callback allows it.

    Args:
        callbacks: list of ``keras.callbacks.Callback``.
        model: the model ``fit`` trains (``fit`` does not set it on a given list).
        params: dict. Keras's ``callback.params`` (``epochs``, ``steps``, ``verbose``).
    """

    def __init__(self, callbacks: list[Any], model: Any, params: dict[str, Any]):
        # a History, as Keras's own list has: fit returns model.history; started here too
        # because an epoch loop of our own (multi_worker) never calls on_train_begin
        super().__init__(list(callbacks), add_history=True, model=model, **params)
        self._history.on_train_begin()
        self.needed = {method: any(implements(c, method) for c in self.callbacks)
                       for method in BATCH_METHODS}

    def on_train_batch_begin(self, batch, logs=None):
        if self.needed["on_train_batch_begin"]:
            super().on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        if self.needed["on_train_batch_end"]:
            super().on_train_batch_end(batch, logs)

    def on_test_batch_begin(self, batch, logs=None):
        if self.needed["on_test_batch_begin"]:
            super().on_test_batch_begin(batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        if self.needed["on_test_batch_end"]:
            super().on_test_batch_end(batch, logs)


class EarlyStopping(keras.callbacks.Callback):
    """``[train.early_stopping]``: stop when a logged metric stops improving.

    Keras's rule (an improvement beats the best by more than `min_delta`; stop after
    `patience` epochs without one), with the best weights taken from the whole model
    (``run.model``, whatever the stage trains), and a state that travels in checkpoints.

    Args:
        run: the :class:`~finetunekit.Run`.
        monitor, patience, min_delta, mode, restore_best: the recipe's keys.
    """

    state_key = "train.early_stopping"
    async_safe = True  # epoch ends only: Keras may dispatch batch ends off the main thread

    def __init__(self, run: Any, *, monitor: str, patience: int, min_delta: float, mode: str,
                 restore_best: bool):
        super().__init__()
        self.run, self.monitor, self.patience = run, monitor, patience
        self.min_delta, self.restore_best = min_delta, restore_best
        if mode == "auto":
            mode = "max" if monitor.endswith(("acc", "accuracy", "auc")) else "min"
        self.mode = mode
        self.wait, self.best, self.best_epoch, self.best_weights = 0, None, None, None
        self.stop_reason = None

    def _improves(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise RecipeError(
                f"train.early_stopping.monitor = '{self.monitor}' is not among the metrics "
                f"this run logs: {', '.join(sorted(logs))}. Monitor one of them (val_ "
                "metrics need validation data).")
        value = float(logs[self.monitor])
        if self._improves(value):
            self.wait, self.best, self.best_epoch = 0, value, epoch + 1
            if self.restore_best:
                self.best_weights = self.run.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stop_reason = (
                f"early stopping: {self.monitor} did not improve for {self.wait} epoch(s) "
                f"(best {self.best:.4g} at epoch {self.best_epoch})")
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best and self.best_weights is not None:
            self.run.model.set_weights(self.best_weights)

    def get_state(self) -> dict[str, Any]:
        return {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch,
                "best_weights": self.best_weights}

    def set_state(self, state: dict[str, Any]) -> None:
        self.wait, self.best, self.best_epoch = state["wait"], state["best"], state["best_epoch"]
        self.best_weights = state.get("best_weights")


def check_finite(logs: dict[str, float], epoch: int, run: Any) -> None:
    """Raise :class:`NonFiniteLossError` if the epoch's training loss is NaN or infinite.

    Checked once per epoch, from the logs Keras already brought to the host, before the
    epoch is recorded or checkpointed: the last checkpoint stays the last good epoch.
    Not per step: that would bring every step's loss to the host (a device sync). A loss
    that turns NaN mid-epoch stays NaN in the epoch's running mean, so it is caught at
    that epoch's end.
    """
    loss = logs.get("loss")
    if loss is None or math.isfinite(loss):
        return
    stage = run.stage
    where = (f" The last good checkpoint is in '{run.path}/checkpoints'; the model was not "
             "saved.") if run.path is not None else " No model was saved."
    raise NonFiniteLossError(
        f"The training loss became {loss} at epoch {epoch} (stage '{stage.name}', "
        f"learning rate {stage.learning_rate:g}), so the run stopped.{where} Lower "
        "optimizer.learning_rate (e.g. by 10x), use train.precision = \"float32\" if it is "
        "mixed, or check the data for broken images or labels; then run it again.",
        epoch=epoch)


def run_callbacks_of(catalogue: Any, run: Any, callbacks: Iterable[Any], state: dict[str, Any],
                     steps: int | None) -> RunCallbacks:
    """The run's callbacks (``[train.early_stopping]`` first, then the caller's), its
    lifecycle plugins' settings, and what of them each checkpoint keeps."""
    early = run.recipe["train"]["early_stopping"]
    chosen = [EarlyStopping(run, **early)] if early is not None else []
    run_callbacks = RunCallbacks([*chosen, *callbacks],
                                 {"epochs": run.plan.epochs, "steps": steps, "verbose": 0})
    run.settings = catalogue.settings(run.recipe)
    observers = {o.name: o for o in catalogue.observers()}
    for name, saved in (state.get("observers") or {}).items():
        if name in observers and observers[name].restore is not None:
            catalogue.call("observer", observers[name], "restore", saved)
    run.state_sources = {
        "callbacks": run_callbacks.state,
        "observers": lambda: {name: catalogue.call("observer", o, "state")
                              for name, o in observers.items() if o.state is not None}}
    return run_callbacks
