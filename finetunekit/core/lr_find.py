"""The learning-rate finder: an exponential sweep of the rate, one batch per step
(Smith 2017, "Cyclical Learning Rates for Training Neural Networks", section 3.3; fastai's
``lr_find``).

On the recipe's first stage that trains (epochs > 0), compiled as the run would compile
it (per-layer rates, the optimizer's own keys) but with a constant rate that the sweep
sets before every batch, from `start` to `end` geometrically over `steps` batches. The
loss of each batch is recorded and smoothed (an exponential moving average with fastai's
bias correction, beta 0.98). The sweep stops early once the smoothed loss passes 4x the
best so far, or is not finite. Every weight (BatchNorm statistics too) is put back after
it, and the model recompiled with a fresh optimizer: the sweep leaves nothing behind.

The suggestion is the rate where the smoothed loss falls fastest (the steepest negative
slope against log10 of the rate; fastai's "steep"), over the points before the minimum of
the smoothed loss. Smith's advice is a rate a little below where the loss falls fastest;
take the suggestion as the top of the range to try, not an exact value.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from finetunekit.core import assembly
from finetunekit.core.catalogue import Catalogue
from finetunekit.core.components import Data
from finetunekit.core.errors import RecipeError
from finetunekit.core.recipe import SCHEDULE_KEYS
from finetunekit.core.training import Run, check_data, steps_per_epoch

SMOOTHING = 0.98
DIVERGENCE = 4.0


@dataclass
class LRFinding:
    """The result of :meth:`Engine.lr_find <finetunekit.Engine.lr_find>`.

    Attributes:
        learning_rates: list of float. The rate of each step swept.
        losses: list of float. The loss of each step's batch.
        smoothed: list of float. The losses smoothed (bias-corrected moving average).
        suggested_learning_rate: float or None. Where the smoothed loss falls fastest;
            None if the sweep ran fewer than 3 steps.
        stage: str. The stage swept.
        stopped_early: bool. The loss diverged before the last step.
    """

    learning_rates: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    suggested_learning_rate: float | None = None
    stage: str = ""
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``lr_find.json``."""
        return {
            "suggested_learning_rate": self.suggested_learning_rate,
            "suggestion_rule": "steepest descent of the smoothed loss against log10(rate)",
            "stage": self.stage,
            "stopped_early": self.stopped_early,
            "curve": [{"learning_rate": r, "loss": l, "smoothed_loss": s}
                      for r, l, s in zip(self.learning_rates, self.losses, self.smoothed)],
        }


def sweep_recipe(run: Run) -> Any:
    """The run's recipe with a constant rate: the sweep sets the rate itself."""
    keys = {key for own in SCHEDULE_KEYS.values() for key in own}
    changes: dict[str, Any] = {f"optimizer.{key}": None for key in keys}
    changes.update({"optimizer.schedule": "constant", "optimizer.carry_state": False})
    return run.recipe.with_overrides(changes)


def batches(data: Data, batch_size: int, seed: int) -> Iterator[tuple[Any, Any]]:
    """Training batches without end: arrays reshuffled every pass (seeded), a dataset or
    PyDataset iterated again from its start."""
    train, epoch = data.train, 0
    while True:
        if isinstance(train, tuple):
            order = np.random.default_rng([seed, epoch]).permutation(len(train[0]))
            for begin in range(0, len(order), batch_size):
                part = order[begin:begin + batch_size]
                yield train[0][part], train[1][part]
        elif isinstance(train, keras.utils.PyDataset):
            for index in range(len(train)):
                yield train[index][:2]
        else:
            for pair in train:
                yield pair[0], pair[1]
        epoch += 1


def suggest(rates: list[float], smoothed: list[float]) -> float | None:
    """The rate of the steepest descent of `smoothed` against log10 of `rates`, before
    its minimum."""
    if len(rates) < 3:
        return None
    end = int(np.argmin(smoothed)) + 1
    if end < 3:
        return float(rates[0])
    slope = np.gradient(np.asarray(smoothed[:end]), np.log10(np.asarray(rates[:end])))
    # the minimum's own slope is one-sided (it only looks back): leave it out
    return float(rates[int(np.argmin(slope[:-1]))])


def lr_sweep(catalogue: Catalogue, run: Run, data: Data, *, start: float, end: float,
             steps: int) -> LRFinding:
    """Sweep the rate on `run`'s first training stage; put every weight back after."""
    if not (0 < start < end) or steps < 2:
        raise RecipeError(
            "lr_find sweeps from start to end over steps batches: it needs 0 < start < end "
            f"and steps >= 2. Received: start={start}, end={end}, steps={steps}.")
    index = next((i for i, stage in enumerate(run.plan.stages) if stage.epochs > 0), None)
    if index is None:
        raise RecipeError("lr_find needs a stage that trains; this plan has 0 epochs. "
                          "Set train.epochs to 1 or more.")
    check_data(data, run)
    recipe, batch_size = run.recipe, run.recipe["data"]["batch_size"]
    seed = recipe["train"]["seed"]
    if run.mix is not None:
        data = run.mix.epoch(data, batch_size, 0, seed)
    keras.utils.set_random_seed(seed)
    kept = [np.array(keras.ops.convert_to_numpy(w), copy=True) for w in run.model.weights]
    run.recipe = sweep_recipe(run)
    finding = LRFinding(stage=run.plan.stages[index].name)
    try:
        assembly.compile_stage(catalogue, run, index, steps_per_epoch(data.train, batch_size))
        optimizer, average, best = run.model.optimizer, 0.0, math.inf
        source = batches(data, batch_size, seed)
        for step in range(steps):
            rate = start * (end / start) ** (step / (steps - 1))
            optimizer.learning_rate = rate
            x, y = next(source)
            loss = float(run.model.train_on_batch(x, y, return_dict=True)["loss"])
            average = SMOOTHING * average + (1 - SMOOTHING) * loss
            smooth = average / (1 - SMOOTHING ** (step + 1))
            finding.learning_rates.append(rate)
            finding.losses.append(loss)
            finding.smoothed.append(smooth)
            if not math.isfinite(smooth) or smooth > DIVERGENCE * best:
                finding.stopped_early = step < steps - 1
                break
            best = min(best, smooth)
    finally:
        run.recipe = recipe
        for weight, value in zip(run.model.weights, kept):
            weight.assign(value)
        assembly.compose(run, 0)  # a fresh model for stage 0, uncompiled, as built
    finite = [(r, s) for r, s in zip(finding.learning_rates, finding.smoothed) if math.isfinite(s)]
    finding.suggested_learning_rate = suggest([r for r, _ in finite], [s for _, s in finite])
    return finding
