"""End-to-end training throughput: ``Engine.run`` epochs against plain ``model.fit``.

:mod:`finetunekit.bench.throughput` times a compiled model's ``fit``; this module times
what a user of ``Engine.run`` waits for per epoch: the per-epoch data order, the
callbacks, the lifecycle hooks (the checkpoint and the report written at every epoch
end), one ``fit`` call per epoch. The other side is plain ``model.fit`` of the same
compiled model (``run.model`` of the engine's latest run) on the same data, one call
for all the epochs, as a Keras user would write it.

For one configuration, ``repeats`` times, alternating:

- **engine**: ``Engine.run`` of the seed's recipe
  (:func:`~finetunekit.bench.throughput.seed_recipe`) with ``1 + epochs`` epochs, saving
  into a fresh run folder (checkpoints, report). :class:`EpochClock` notes the time at
  each epoch's begin and end (before the other hooks); the first epoch
  (tracing, compiling) is the warm-up, and the figure is the training images of the
  other epochs over the time from the first epoch's end to the last one's.
- **plain**: ``run.model.fit(..., epochs=epochs)`` on the same data, timed as a whole
  (one untimed epoch first, once).

The feature cache is off (``train.feature_cache = "off"``) so both train the same
model; a one-stage strategy is required. Both see the same validation split.

Two sources: ``arrays`` (uint8 arrays in memory; plain ``fit`` shuffles them itself)
and ``stream`` (:func:`streamed_source`: a ``tf.data`` pipeline on TensorFlow, a
``keras.utils.PyDataset`` on JAX, handed to both sides as ``Data(train=...)``).
One backend per process: run the command once per ``KERAS_BACKEND``.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from finetunekit.bench.throughput import Config, check_precision, device_name, seed_recipe
from finetunekit.core.errors import RecipeError, unknown_name_message
from finetunekit.core.manager import hookimpl

SOURCES = ("arrays", "stream")
"""The data sources the end-to-end benchmark times (:func:`source_data`)."""


@dataclass(frozen=True)
class EndToEndConfig(Config):
    """One end-to-end measurement.

    Args:
        backbone, strategy, batch_size, precision, image_size: as in
            :class:`~finetunekit.bench.throughput.Config`; the strategy must have one stage.
        steps: int. Training batches per epoch.
        epochs: int. Timed epochs per repeat (each side).
        repeats: int. Alternating repeats; medians and the spread are reported.
        source: str. One of :data:`SOURCES`.
        run_folder: bool. The engine saves into a run folder (epoch checkpoints, the
            report); False times its training loop alone (``save=False``).
    """

    epochs: int = 2
    source: str = "arrays"
    run_folder: bool = True

    @property
    def id(self) -> str:
        """A readable id, e.g. ``vgg16-full-b8-float32-32px-arrays``."""
        return f"{super().id}-{self.source}{'' if self.run_folder else '-nosave'}"


def check_source(source: str) -> str:
    """Return `source` if the benchmark knows it, else raise a RecipeError."""
    if source not in SOURCES:
        raise RecipeError(unknown_name_message("source", source, SOURCES))
    return source


class EpochClock(keras.callbacks.Callback):
    """Notes when each epoch begins (a Keras callback of the run: no batch methods, so no
    step's logs leave the device) and ends (a lifecycle hook called before the others:
    the checkpoint and the report written after it count as time between epochs)."""

    def __init__(self):
        super().__init__()
        self.begins: list[float] = []
        self.ends: list[float] = []
        self.cpu_ends: list[float] = []  # this process's CPU time, every thread

    def on_epoch_begin(self, epoch, logs=None):
        self.begins.append(time.perf_counter())

    @hookimpl(tryfirst=True)
    def finetunekit_epoch_end(self, run, stage, epoch, logs):
        self.ends.append(time.perf_counter())
        self.cpu_ends.append(time.process_time())

    def clear(self) -> None:
        self.begins.clear()
        self.ends.clear()
        self.cpu_ends.clear()

    def between(self) -> list[float]:
        """Seconds from each epoch's end to the next one's begin (hooks, checkpoint,
        report, the next epoch's data order, the next ``fit`` call's set-up)."""
        return [begin - end for end, begin in zip(self.ends, self.begins[1:])]


def images(config: EndToEndConfig) -> tuple[tuple[np.ndarray, np.ndarray],
                                             tuple[np.ndarray, np.ndarray]]:
    """Seeded random uint8 training images (``steps`` batches) and a validation split
    of a quarter as many (at least one batch), binary labels."""
    rng = np.random.default_rng(0)
    size, n = config.image_size, config.steps * config.batch_size
    n_val = max(config.batch_size, n // 4)
    x = rng.integers(0, 256, (n + n_val, size, size, 3), dtype=np.uint8)
    y = (np.arange(n + n_val) % 2).astype("float32")
    return (x[:n], y[:n]), (x[n:], y[n:])


def streamed_source(train: tuple[np.ndarray, np.ndarray], validation: tuple[np.ndarray, np.ndarray],
                    batch_size: int) -> tuple[Any, Any]:
    """The streamed row's pipelines, new for each side and repeat: ``tf.data`` (shuffled
    each epoch, batched, prefetched) on TensorFlow, a ``keras.utils.PyDataset`` (its
    order drawn again at each epoch end) on JAX, where TensorFlow may be absent.

    This is where the streamed row switches to the folder source once it can stream
    (``data.in_memory = false``): write :func:`images` to a class folder once and hand
    the engine the recipe's ``[data]`` section instead of these objects.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def pipeline(pair, shuffle):
            data = tf.data.Dataset.from_tensor_slices(pair)
            if shuffle:
                data = data.shuffle(len(pair[0]), seed=0, reshuffle_each_iteration=True)
            return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)

        return pipeline(train, True), pipeline(validation, False)
    return Batches(*train, batch_size, shuffle=True), Batches(*validation, batch_size)


class Batches(keras.utils.PyDataset):
    """``(images, labels)`` batches of arrays, reordered at each epoch end if `shuffle`."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool = False):
        super().__init__()
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.rng = np.random.default_rng(0)
        self.order = self.rng.permutation(len(x)) if shuffle else np.arange(len(x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        return self.x[rows], self.y[rows]

    def on_epoch_end(self):
        if self.shuffle:
            self.order = self.rng.permutation(len(self.x))


def source_data(config: EndToEndConfig, train, validation):
    """What each side is fed: ``(engine Data, plain fit arguments)``."""
    from finetunekit.core.components import Data

    if config.source == "arrays":
        return (Data(train=train, validation=validation),
                {"x": train[0], "y": train[1], "batch_size": config.batch_size,
                 "validation_data": validation, "shuffle": True})
    # a pipeline orders itself (fit's shuffle would only warn)
    engine_train, engine_val = streamed_source(train, validation, config.batch_size)
    plain_train, plain_val = streamed_source(train, validation, config.batch_size)
    return (Data(train=engine_train, validation=engine_val),
            {"x": plain_train, "validation_data": plain_val, "shuffle": False})


def _recipe(config: EndToEndConfig, path: Path):
    from finetunekit.core.recipe import Recipe

    data = seed_recipe(config).to_dict()
    data["train"].update(epochs=1 + config.epochs, feature_cache="off")
    data.setdefault("save", {})["path"] = str(path)
    return Recipe.from_dict(data)


def measure_end_to_end(config: EndToEndConfig, plugins: list[Any] = ()) -> dict[str, Any]:
    """Time ``Engine.run`` epochs and plain ``fit`` for `config`; one row of ``bench.json``.

    Args:
        config: the :class:`EndToEndConfig`.
        plugins: extra plugins for the engine (besides its built-ins).

    Returns:
        dict: the configuration; ``engine_images_per_s`` and ``plain_images_per_s``
        (medians) and every repeat; ``ratio`` (the median of the repeats' engine / plain),
        ``ratio_min`` and ``ratio_max``; ``cpu_ratio``, the process's CPU seconds (every
        thread) for the same epochs, plain / engine (median; steadier than wall time on a
        shared machine; below 1: the engine does more work); the seconds per epoch of
        each side and, of the
        engine's, ``between_epochs_s`` (:meth:`EpochClock.between`, median); the backend
        and device.

    Raises:
        RecipeError: the strategy trains in more than one stage.
    """
    from finetunekit.core.engine import Engine

    check_precision(config.precision)
    check_source(config.source)
    clock = EpochClock()
    engine = Engine([clock, *plugins], entry_points=False)  # the clock: a plugin and a callback
    stages = len(engine.build(_recipe(config, Path("unused"))).plan.stages)
    if stages != 1:
        raise RecipeError(
            f"bench --end-to-end times one-stage strategies; '{config.strategy}' trains in "
            f"{stages} stages. Pick a one-stage strategy, e.g. feature_extraction, partial "
            "or full.")
    train, validation = images(config)
    n = len(train[0])
    engine_rates: list[float] = []
    plain_rates: list[float] = []
    cpu_ratios: list[float] = []  # plain / engine CPU seconds: steadier on a shared machine
    between: list[float] = []
    with tempfile.TemporaryDirectory(prefix="finetunekit-bench-") as folder:
        for repeat in range(config.repeats):
            engine_data, plain_args = source_data(config, train, validation)
            clock.clear()
            recipe = _recipe(config, Path(folder) / f"run-{repeat}")
            run = engine.run(recipe, data=engine_data, save=config.run_folder,
                             callbacks=[clock])
            engine_rates.append(config.epochs * n / (clock.ends[-1] - clock.ends[0]))
            between.append(statistics.median(clock.between()))
            model = run.model
            if repeat == 0:  # the plain side's warm-up: its fit, its iterators
                model.fit(**{**plain_args, "epochs": 1, "verbose": 0})
            started, cpu = time.perf_counter(), time.process_time()
            model.fit(**plain_args, epochs=config.epochs, verbose=0)
            plain_rates.append(config.epochs * n / (time.perf_counter() - started))
            cpu_ratios.append((time.process_time() - cpu)
                              / (clock.cpu_ends[-1] - clock.cpu_ends[0]))
    ratios = [a / b for a, b in zip(engine_rates, plain_rates)]
    return {
        "id": config.id, "backbone": config.backbone, "strategy": config.strategy,
        "source": config.source, "batch": config.batch_size, "precision": config.precision,
        "image_size": config.image_size, "steps": config.steps, "epochs": config.epochs,
        "repeats": config.repeats,
        "engine_images_per_s": round(statistics.median(engine_rates), 2),
        "plain_images_per_s": round(statistics.median(plain_rates), 2),
        "ratio": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3), "ratio_max": round(max(ratios), 3),
        "cpu_ratio": round(statistics.median(cpu_ratios), 3),
        "run_folder": config.run_folder,
        "engine_epoch_s": round(n / statistics.median(engine_rates), 3),
        "plain_epoch_s": round(n / statistics.median(plain_rates), 3),
        "between_epochs_s": round(statistics.median(between), 3),
        "engine_images_per_s_repeats": [round(r, 2) for r in engine_rates],
        "plain_images_per_s_repeats": [round(r, 2) for r in plain_rates],
        "backend": keras.backend.backend(), "device": device_name(),
    }
