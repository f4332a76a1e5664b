"""Training helpers of the engine: the Run record, one epoch of fit, data checks.

Kept apart so that :mod:`finetunekit.core.engine` reads as the flow alone.
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from finetunekit.core import stages
from finetunekit.core.background import BackgroundWrites
from finetunekit.core.callbacks import BATCH_METHODS, check_finite, implements
from finetunekit.core.components import BuiltHead, Data, Plan, Stage
from finetunekit.core.manager import hookimpl
from finetunekit.core.errors import DataError
from finetunekit.core.examples import is_examples
from finetunekit.core.feeding import Feed, as_feed, keras_input
from finetunekit.core.recipe import Recipe

@dataclass
class Run:
    """One fine-tuning run: what was built from a recipe, and what happened since.

    Attributes:
        recipe: the :class:`~finetunekit.Recipe` as run.
        base: keras.Model. The convolutional base.
        blocks: list of list of str. The base's layer names grouped into blocks.
        head: :class:`~finetunekit.BuiltHead`. The head layer, loss and metrics.
        plan: :class:`~finetunekit.Plan`. The strategy's stages.
        model: keras.Model. uint8 images in, predictions out; recomposed per stage.
        preprocess: keras.Layer. The backbone's normalisation inside the model.
        augment: keras.Layer or None. Random augmentation before it (training only).
        mix: :class:`~finetunekit.core.mixing.LabelMixing` or None. Label-mixing
            augmentation (MixUp, CutMix) applied to each epoch's training batches.
        path: Path or None. The run folder (``save.path``).
        history: list of dict. One row per epoch: epoch, stage, metrics, learning rate.
        stage_index: int. The stage the model is prepared for.
        class_names: list of str or None. From the data, once loaded.
        variable_flags: dict. Each base variable's own trainable flag after planning
            (a strategy may change some, e.g. LoRA), restored at every stage.
        steps_per_epoch: int or None. Batches per epoch, once training started.
        stopped: dict or None. Set when the run ended early: ``{"epoch": int, "reason":
            str}`` (a callback set ``model.stop_training``, early stopping, or
            :meth:`request_stop`). None when it trained every planned epoch.
        settings: dict. Each lifecycle plugin's section the recipe has, its keys
            validated and defaults filled (:class:`~finetunekit.Observer`).
        epoch: int. The epoch training or last trained, from 1 (0 before training).
        optimizer: a ``keras.optimizers.Optimizer`` or a callable
            ``(stage, steps_per_epoch) -> optimizer`` given from Python
            (``Engine.run(optimizer=...)``), or None: the recipe's ``[optimizer]``.
        optimizers_used: list of dict. Per compiled stage, the optimizer's class and
            config when it came from Python (written to ``optimizer.json``).
        stage_callbacks: list. Keras callbacks the current stage's schedule needs
            (``schedule = "plateau"``), set at each compile; fit adds them.
        writes: :class:`~finetunekit.core.background.BackgroundWrites`. Durable writes
            a plugin hands off the training thread (the epoch checkpoints do);
            ``Engine.fit`` waits for the last one before it returns or raises.
    """

    recipe: Recipe
    base: Any
    blocks: list[list[str]]
    head: BuiltHead
    plan: Plan
    model: Any
    preprocess: Any
    augment: Any = None
    mix: Any = None
    path: Path | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    stage_index: int = 0
    variable_flags: dict[str, bool] = field(default_factory=dict)
    steps_per_epoch: int | None = None
    class_names: list[str] | None = None
    stopped: dict[str, Any] | None = None
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    epoch: int = 0
    state_sources: dict[str, Callable[[], Any]] = field(default_factory=dict, repr=False)
    optimizer: Any = None
    optimizers_used: list[dict[str, Any]] = field(default_factory=list)
    stage_callbacks: list[Any] = field(default_factory=list)
    writes: BackgroundWrites = field(default_factory=BackgroundWrites, repr=False)

    def request_stop(self, reason: str) -> None:
        """End the run cleanly after the current epoch (the first request is kept).

        Call it from a lifecycle hook; the run folder is written as for a finished run,
        with ``stopped`` in ``plan.json``, and a resumed run stops there too.
        """
        if self.stopped is None:
            self.stopped = {"epoch": self.epoch, "reason": str(reason)}

    def checkpoint_state(self) -> dict[str, Any]:
        """The state beyond the model that a checkpoint keeps: the stop, and what each
        source the engine registered (callbacks, lifecycle plugins) returns now."""
        return {"stopped": self.stopped,
                **{name: source() for name, source in self.state_sources.items()}}

    @property
    def stage(self) -> Stage:
        return self.plan.stages[self.stage_index]

    def trained_layers(self, index: int | None = None) -> list[str]:
        """The base's layers with a weight that trains in stage `index` (default: the
        current one): what a stage really trains, unlike ``stage.trainable``, which may
        name layers without weights (pooling) or BatchNorm layers kept frozen.

        The stage's flags are applied to read them, then the current stage's put back.
        """
        def trained() -> list[str]:
            return [layer.name for layer in self.base.layers
                    if any(weight.trainable for weight in layer.weights)]

        if index is None or index == self.stage_index:
            return trained()
        for position in (index, self.stage_index):
            stage = self.plan.stages[position]
            stages.apply_trainable(self.base, stage.trainable, train_bn=stage.train_bn,
                                   variables=stage.variables, original=self.variable_flags)
            if position == index:
                names = trained()
        return names




class Lifecycle(keras.callbacks.Callback):
    """Forwards Keras's callbacks to the lifecycle hooks and the run's own callbacks
    (:class:`~finetunekit.core.callbacks.RunCallbacks`), records history, and stops.

    At an epoch end, in order: a non-finite loss raises; the run's callbacks see the
    epoch (one that sets ``model.stop_training`` stops the run); the history row is
    added; the ``finetunekit_epoch_end`` hooks run (the checkpoint writer last).

    Batch methods cost a host sync per step when they receive logs, so each is kept
    only if something needs it: ``finetunekit_batch_start`` (no logs, no sync) if a
    plugin implements it, ``finetunekit_batch_end`` if a plugin implements it, and the
    run's callbacks' own batch methods if they implement them. The others stay Keras's
    empty defaults, which :class:`~finetunekit.core.callbacks.StageCallbacks` skips.
    ``async_safe`` holds when no plugin takes batch ends (pluggy hooks run in order, on
    the training thread) and every run callback that takes them is ``async_safe``.
    """

    def __init__(self, engine: Any, run: Run, stage: Stage, callbacks: Any = None):
        super().__init__()
        self.engine, self.run, self.stage, self.callbacks = engine, run, stage, callbacks
        hook = engine.pm.hook
        self._batch_start = bool(hook.finetunekit_batch_start.get_hookimpls())
        self._batch_end = bool(hook.finetunekit_batch_end.get_hookimpls())
        users = callbacks.callbacks if callbacks is not None else []
        for method in BATCH_METHODS:
            plugin = {"on_train_batch_begin": self._batch_start,
                      "on_train_batch_end": self._batch_end}.get(method, False)
            if not plugin and not any(implements(c, method) for c in users):
                setattr(self, method, getattr(keras.callbacks.Callback, method).__get__(self))
        self.async_safe = not self._batch_end and all(
            getattr(c, "async_safe", False) for c in users
            if any(implements(c, m) for m in ("on_train_batch_end", "on_test_batch_end")))

    def _forward(self, method: str, *args: Any) -> None:
        if self.callbacks is not None:
            self.callbacks.call(method, *args)

    def on_epoch_begin(self, epoch, logs=None):
        self.run.epoch = epoch + 1
        self._forward("on_epoch_begin", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._forward("on_train_batch_begin", batch, logs)
        if self._batch_start:
            self.engine.call("finetunekit_batch_start", run=self.run, stage=self.stage,
                             batch=batch)

    def on_train_batch_end(self, batch, logs=None):
        self._forward("on_train_batch_end", batch, logs)
        if self._batch_end:
            self.engine.call("finetunekit_batch_end", run=self.run, stage=self.stage,
                             batch=batch, logs=dict(logs or {}))

    def on_test_begin(self, logs=None):
        self._forward("on_test_begin", logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._forward("on_test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        self._forward("on_test_batch_end", batch, logs)

    def on_test_end(self, logs=None):
        self._forward("on_test_end", logs)

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        check_finite(logs, epoch + 1, self.run)
        if self.callbacks is not None:
            reason = self.callbacks.epoch_end(epoch, dict(logs), self.model)
            if reason is not None:
                self.run.request_stop(reason)
        rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {"epoch": epoch + 1, "stage": self.stage.name, **logs, "learning_rate": rate}
        self.run.history.append(row)
        self.engine.call("finetunekit_epoch_end", run=self.run, stage=self.stage,
                         epoch=epoch + 1, logs=logs)


def fit_epoch(model: Any, data: Data, batch_size: int, epoch: int, seed: int,
              callbacks: list, loop: Any = None, shard: tuple[int, int] = (1, 0)) -> None:
    """Train one epoch (numbered from 0), by Keras's ``fit`` or by `loop` if given
    (:meth:`~finetunekit.core.distribution.Distributions.epoch_loop`).

    Arrays and other :class:`~finetunekit.core.examples.Examples` are ordered here, by
    :func:`~finetunekit.core.examples.epoch_order` (seed, epoch), and read in batches of
    indices (:mod:`.feeding`) rather than shuffled by Keras: the order of any epoch then
    depends on nothing but the recipe, so a run can be resumed at an epoch boundary and
    see the same batches, whichever pipeline reads them. `shard` is ``(parts, which)``:
    this process reads part `which` of every global batch (several JAX processes).
    """
    train = as_feed(data.train, batch_size, epoch, seed, shuffle=True)
    validation = as_feed(data.validation, batch_size, epoch, seed, shuffle=False)
    if loop is not None:
        loop(model, train, validation, batch_size, epoch, callbacks)
        return
    feeds = [f for f in (train, validation) if isinstance(f, Feed)]
    if shard[0] > 1:
        train, validation = (f.shard(*shard) if isinstance(f, Feed) else f
                             for f in (train, validation))
        feeds = [f for f in (train, validation) if isinstance(f, Feed)]
    kwargs: dict[str, Any] = {"initial_epoch": epoch, "epochs": epoch + 1,
                              "callbacks": callbacks, "verbose": 0}
    if validation is not None:
        kwargs["validation_data"] = keras_input(validation) if isinstance(validation, Feed) else validation
    fit_input = keras_input(train) if isinstance(train, Feed) else train
    ours = shard[0] > 1 and all(isinstance(f, Feed) for f in (train, validation)
                                if f is not None)
    try:
        with warnings.catch_warnings(), _already_sharded(ours):
            # a tf.data feed drops files that fail to decode, so its length is not
            # declared, and Keras warns at its end as if it had run short
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            model.fit(fit_input, shuffle=False, **kwargs)  # ordered here; Keras warns otherwise
    except Exception as exc:
        for feed in feeds:  # a refusal raised inside a tf.data pipeline, as itself
            if feed.error is not None:
                raise feed.error from exc
        raise
    for feed in feeds:  # batches a tf.data pipeline dropped whole (every file failed)
        feed.report_missing(complete=not getattr(model, "stop_training", False))


@contextlib.contextmanager
def _already_sharded(active: bool):
    """Tell Keras's multi-process distribution (JAX ``data_parallel``) not to shard the
    input while `active`: each process then feeds its own part of every global batch,
    read by :meth:`Feed.shard`, and Keras joins the parts; without it Keras accepts only
    a ``tf.data.Dataset`` from several processes."""
    distribution = keras.distribution.distribution() if active else None
    if distribution is None or not hasattr(distribution, "auto_shard_dataset"):
        yield
        return
    before = distribution.auto_shard_dataset
    distribution.auto_shard_dataset = False
    try:
        yield
    finally:
        distribution.auto_shard_dataset = before


def steps_per_epoch(train: Any, batch_size: int) -> int | None:
    if isinstance(train, tuple):
        return math.ceil(len(train[0]) / batch_size)
    if is_examples(train):
        return math.ceil(len(train) / batch_size)
    try:
        n = len(train)
    except TypeError:
        return None
    return int(n) if n >= 0 else None


def first_images(train: Any) -> Any:
    """One training image as a batch of one (to call the whole model once), or None."""
    if isinstance(train, tuple) and len(train[0]):
        return train[0][:1]
    if is_examples(train) and len(train):
        x, _ = train.read_available(np.arange(min(len(train), 8)))
        return x[:1] if len(x) else None
    return None


def _check_arrays(name: str, pair: Any, run: Run) -> None:
    if not (isinstance(pair, tuple) and len(pair) == 2):
        raise DataError(f"Data.{name} must be an (images, labels) tuple. Received: {type(pair).__name__}.")
    x, y = pair
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise DataError(
            f"Data.{name} images and labels must be numpy arrays. Received: "
            f"{type(x).__name__}, {type(y).__name__}."
        )
    expected = tuple(run.recipe["backbone"]["input_shape"])
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise DataError(
            f"Data.{name} images must have shape (n, {', '.join(map(str, expected))}) to match "
            f"backbone.input_shape. Received: {x.shape}."
        )
    if x.dtype != np.uint8:
        raise DataError(
            f"Data.{name} images must be uint8 pixels in [0, 255] (the model normalises them). "
            f"Received dtype {x.dtype}. Convert with images.astype('uint8') if they are 0-255."
        )
    if len(y) != len(x):
        raise DataError(f"Data.{name} has {len(x)} images but {len(y)} labels.")
    _check_labels(name, y, run)


def _check_examples(name: str, examples: Any, run: Run) -> None:
    expected = tuple(run.recipe["backbone"]["input_shape"])
    if tuple(examples.shape) != expected or str(examples.dtype) != "uint8":
        raise DataError(
            f"Data.{name} examples must be uint8 images of shape {expected} to match "
            f"backbone.input_shape. Received: {examples.dtype} examples of shape "
            f"{tuple(examples.shape)}.")
    _check_labels(name, np.asarray(examples.labels), run)


def _check_labels(name: str, y: np.ndarray, run: Run) -> None:
    classes = int(run.model.output_shape[-1])
    top = 1 if classes == 1 else classes - 1
    if y.size and (y.min() < 0 or y.max() > top):
        raise DataError(
            f"Data.{name} labels must lie in 0..{top} for a head with {classes} output(s). "
            f"Received labels from {y.min()} to {y.max()}. Set head.classes to the number of "
            "classes (1 for a binary sigmoid head)."
        )


def check_data(data: Data, run: Run) -> None:
    classes = int(run.model.output_shape[-1])
    if data.class_names is not None:
        wanted = 2 if classes == 1 else classes
        if len(data.class_names) != wanted:
            raise DataError(
                f"The data has {len(data.class_names)} classes ({', '.join(data.class_names)}) "
                f"but head.classes = {classes} expects {wanted}. Set head.classes = "
                f"{1 if len(data.class_names) == 2 else len(data.class_names)}."
            )
    for name in ("train", "validation"):
        split = getattr(data, name)
        if isinstance(split, tuple):
            _check_arrays(name, split, run)
        elif is_examples(split):
            _check_examples(name, split, run)


def fresh_metric(metric: Any) -> Any:
    """A new metric like `metric`, so two compiled models (two stages, or a stage and its
    cached head) never share metric state."""
    if isinstance(metric, keras.metrics.Metric):
        return metric.__class__.from_config(metric.get_config())
    return metric


class EpochLines:
    """What ``Engine(verbose=1)`` prints: a line per stage and per epoch, on stderr.

    It observes stage starts and epoch ends only, so Keras never has to hand the
    per-step logs to Python (no host sync per batch).
    """

    def __init__(self, stream: Any = None):
        self.stream = stream

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)

    @hookimpl
    def finetunekit_stage_start(self, run, stage, index):
        self._print(f"stage {index + 1}/{len(run.plan.stages)} {stage.name}: {stage.epochs} "
                    f"epoch(s), lr {stage.learning_rate:g}, "
                    f"{len(run.trained_layers(index))} trainable base layer(s)")

    @hookimpl
    def finetunekit_epoch_end(self, run, stage, epoch, logs):
        values = "  ".join(f"{key} {value:.4f}" for key, value in logs.items()
                           if isinstance(value, float))
        self._print(f"epoch {epoch}/{run.plan.epochs}  {values}")
