"""Accuracy per strategy on a real transfer task: tuned on equal terms, in and out of
distribution, over label budgets and paired seeds (docs/benchmarks.md).

The task is the demo's: each backbone is pretrained from random weights on
scikit-learn's digits 0-4 (:mod:`.sources`, cached), then learns the digits 5-9.

The protocol, for each backbone, label budget and strategy (the no-transfer baseline,
``full`` from random weights, is one more strategy):

1. **Splits.** A test set of ``test_per_class`` images per digit is set aside once,
   with a fixed seed; everything else is the *pool*. A seed draws ``n`` labelled images
   per digit from the pool (the budgets are nested: a seed's 5 are among its 10). The
   test set is never trained on, tuned on or drawn from.
2. **Tuning, the same budget for every strategy.** On a separate draw of ``n`` labels
   per digit (seed ``tune_seed``), ``holdout`` of them per digit are held out; the
   strategy trains on the rest once per rate of the grid ``rates``, and the rate with
   the best held-out accuracy (ties: lower held-out loss) is chosen. Where that holds
   out fewer than ``min_held_out`` images per digit, the draw is cross-validated: more
   folds hold out its next disjoint parts, and a rate's score pools every fold's
   held-out images (5 labels: 4 folds, 20 images scored instead of 5). Only the rate is
   tuned: finetunekit's strategies declare no tunable keys, so every other key keeps
   the benchmark's value.
3. **Runs.** For each seed, the strategy trains on the seed's ``n`` labels at the
   chosen rate and is scored on the test set (ID) and on its shifted copy
   (:func:`.shift.shifted`: noise, blur, rotation, contrast, inversion at
   ``severity``; OOD). Runs are paired by seed: the same labels, head initialisation
   (``train.seed``) and batch order for every strategy.

Training length is set in optimizer steps, not epochs, so a budget of 5 labels is not
4 steps long: ``epochs = max(min_epochs, ceil(min_steps / steps per epoch))``.
``two_stage`` probes for half of them (LP-FT), ``partial`` trains the last block.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from finetunekit.bench import shift
from finetunekit.bench.sources import Source, SourceSettings, given, pretrained
from finetunekit.bench.task import (
    TEST_SEED,
    Task,
    digits_task,
    draw,
    tuning_folds,
    user_task,
)
from finetunekit.core.errors import NonFiniteLossError, RecipeError

RANDOM = "full_random"
"""Row label of the no-transfer baseline: the ``full`` recipe from random weights."""

BACKBONES = ("vgg16", "vit_tiny")
"""The accuracy benchmark's default backbones: a CNN and a transformer."""


@dataclass(frozen=True)
class AccuracySettings:
    """What the accuracy benchmark trains.

    Args:
        strategies: tuple of str. Strategy names, in table order (``full_random`` is
            added as the baseline).
        backbones: tuple of str. ``vgg16``, ``vit_tiny`` or other catalogue backbones.
        seeds: tuple of int. Paired seeds (5 or more for the intervals to mean much).
        budgets: tuple of int or None. Labelled images per class; None: the whole pool.
        rates: tuple of float. The learning-rate grid every strategy is tuned over.
        test_per_class: int. Test images per class (the fixed ID test set).
        holdout: float. Share of the tuning draw's labels held out (at least 1 per class).
        min_held_out: int. Held-out labels per class each rate is scored on, at least:
            where ``holdout`` gives fewer (5 labels: 1), the tuning cross-validates over
            that many disjoint folds (5 labels: 4 folds of 4 fit, 1 held out).
        min_steps: int. Optimizer steps a run takes at least.
        min_epochs: int. Epochs a run takes at least.
        batch_size: int. Batch size of every run.
        severity: int. Severity of the OOD corruptions, 1 to 5.
        tune_seed: int. Seed of the tuning draw and its runs.
        image_size: int. Input height and width.
        weights: str or None. ``"imagenet"`` or a weights file: no source run.
        data: str or None. A folder with ``train/`` (the pool) and ``validation/`` (the
            test set) class folders instead of the digits 5-9.
        cache: str or None. Folder of the cached sources (None: the default).
        sources: dict or None. :class:`~finetunekit.bench.sources.SourceSettings` per
            backbone, instead of :data:`~finetunekit.bench.sources.SOURCES`'.
    """

    strategies: tuple[str, ...]
    backbones: tuple[str, ...] = BACKBONES
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    budgets: tuple[int | None, ...] = (5, 10, 50, None)
    rates: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    test_per_class: int = 40
    holdout: float = 0.2
    min_held_out: int = 4
    min_steps: int = 60
    min_epochs: int = 4
    batch_size: int = 8
    severity: int = 3
    tune_seed: int = 1000
    image_size: int = 32
    weights: str | None = None
    data: str | None = None
    cache: str | None = None
    sources: dict[str, SourceSettings] | None = None


QUICK = dict(strategies=("feature_extraction", "full"), backbones=("vgg16",), seeds=(0, 1),
             budgets=(10,), rates=(1e-4, 1e-2), test_per_class=30, min_steps=40,
             min_held_out=2)
"""``--quick``: one backbone, two strategies and the baseline, 10 labels per class, two
seeds, a two-rate grid, 40 steps a run (6 epochs of 50 images: the old quick mode's 2
epochs of 25 images, 8 steps at 1e-4, left every strategy at chance), each rate scored
on one held-out split of 2 labels per class (no cross-validation)."""


def epochs_for(settings: AccuracySettings, images: int) -> int:
    """Epochs of a run on `images` training images: enough for ``min_steps`` steps."""
    steps = max(1, math.ceil(images / settings.batch_size))
    return max(settings.min_epochs, math.ceil(settings.min_steps / steps))


# -------------------------------------------------------------------------
# one run
# -------------------------------------------------------------------------


def strategy_section(name: str, epochs: int) -> dict[str, Any]:
    """The ``[strategy]`` of a strategy in the benchmark: its defaults, ``partial``'s
    last block, ``two_stage`` probing for half the epochs (LP-FT's linear probe)."""
    if name == RANDOM:
        return {"name": "full"}
    if name == "partial":
        return {"name": name, "unfreeze_blocks": 1}
    if name == "two_stage":
        return {"name": name, "probe_epochs": max(1, epochs // 2)}
    return {"name": name}


def recipe_for(source: Source, strategy: str, rate: float, epochs: int, seed: int,
               settings: AccuracySettings, classes: int):
    """The recipe of one run (transferred weights, except for the baseline)."""
    from finetunekit.core.recipe import Recipe

    weights = "none" if strategy == RANDOM else source.weights
    return Recipe.from_dict({
        "backbone": {**source.section, "weights": weights},
        "strategy": strategy_section(strategy, epochs),
        "head": {"classes": classes},
        "optimizer": {"name": "adam", "learning_rate": rate},
        "data": {"source": "digits", "batch_size": settings.batch_size},  # data is given
        "train": {"epochs": epochs, "seed": seed},
    })


def score(model, images: np.ndarray, labels: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Accuracy, mean cross-entropy and per-image correctness of `model` on the images."""
    probs = np.asarray(model.predict(images, batch_size=64, verbose=0), dtype=np.float64)
    correct = np.argmax(np.nan_to_num(probs, nan=-1.0), axis=1) == labels
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
    loss = float(-np.mean(np.log(np.nan_to_num(picked, nan=1e-12))))
    return float(correct.mean()), loss, correct


def train(engine, source: Source, strategy: str, rate: float, seed: int, task: Task,
          indices: np.ndarray, settings: AccuracySettings):
    """Train one run on the task's images at `indices`; the run, or None if it diverged."""
    from finetunekit.core.components import Data

    epochs = epochs_for(settings, len(indices))
    recipe = recipe_for(source, strategy, rate, epochs, seed, settings, len(task.class_names))
    data = Data(train=(task.images[indices], task.labels[indices]), validation=None,
                class_names=task.class_names)
    try:
        return engine.run(recipe, data=data, save=False), epochs
    except NonFiniteLossError:
        return None, epochs


# -------------------------------------------------------------------------
# the benchmark
# -------------------------------------------------------------------------


def applicable(engine, source: Source, strategy: str, settings: AccuracySettings,
               classes: int) -> str | None:
    """None if the strategy plans on the backbone, else the reason it does not."""
    try:
        engine.build(recipe_for(source, strategy, 1e-3, 4, 0, settings, classes))
    except RecipeError as exc:
        return str(exc)
    return None


def tune(engine, source: Source, strategy: str, budget: int | None, task: Task,
         settings: AccuracySettings, log) -> dict[str, Any]:
    """Try every rate of the grid on the tuning draw's folds; the chosen one and every
    trial. A rate's score pools the held-out images of every fold; a rate that diverges
    on any fold scores nothing."""
    folds = tuning_folds(task, draw(task, budget, settings.tune_seed), settings.holdout,
                         settings.min_held_out)
    held_out = sum(len(held) for _, held in folds)
    trials = []
    for rate in settings.rates:
        correct, losses = [], []
        for fit, held in folds:
            run, _ = train(engine, source, strategy, rate, settings.tune_seed, task, fit,
                           settings)
            if run is None:
                break
            _, loss, right = score(run.model, task.images[held], task.labels[held])
            correct.append(right)
            losses.append(loss * len(held))
        diverged = len(correct) < len(folds)
        trials.append({
            "rate": rate, "diverged": diverged,
            "held_out_accuracy": (float("-inf") if diverged
                                  else float(np.concatenate(correct).mean())),
            "held_out_loss": float("inf") if diverged else sum(losses) / held_out})
    best = max(trials, key=lambda t: (t["held_out_accuracy"], -t["held_out_loss"]))
    first_fit, first_held = folds[0]
    log(f"  tuned {strategy}: rate {best['rate']:g} ("
        + ", ".join(f"{t['rate']:g}: {t['held_out_accuracy']:.2f}" for t in trials)
        + f"; {len(folds)} fold(s) of {len(first_fit)} fit, {len(first_held)} held out)")
    return {"rate": best["rate"], "trials": trials, "fit": len(first_fit),
            "held_out": len(first_held), "folds": len(folds)}


def measure_strategy(engine, source: Source, strategy: str, budget: int | None, task: Task,
                     shifted: tuple[np.ndarray, np.ndarray], settings: AccuracySettings, *,
                     log: Callable[[str], Any], on_item: Callable[[dict[str, Any]], Any]
                     ) -> dict[str, Any]:
    """Tune one strategy at one label budget, then train and score it once per seed.

    Args:
        engine: the :class:`~finetunekit.Engine`, or None for a new one.
        source: the pretrained :class:`~finetunekit.bench.sources.Source`.
        strategy: str. A strategy name or ``full_random``.
        budget: int or None. Labels per class (None: the whole pool).
        task: :class:`Task`.
        shifted: (images, corruption index per image): the test set's shifted copy.
        settings: :class:`AccuracySettings`.
        log: callable taking a line of progress text.
        on_item: callable, called with each row as soon as it is measured.

    Returns:
        dict: the tuning record (``rate``, ``trials``, ``fit``, ``held_out``).
    """
    from finetunekit.core.engine import Engine
    from finetunekit.core.stages import trainable_param_count

    engine = engine or Engine()
    test_x, test_y = task.images[task.test], task.labels[task.test]
    ood_x, kind = shifted
    kinds = list(shift.CORRUPTIONS)
    label = "all" if budget is None else str(budget)
    tuned = tune(engine, source, strategy, budget, task, settings, log)
    for seed in settings.seeds:
        indices = draw(task, budget, seed)
        started = time.perf_counter()
        run, epochs = train(engine, source, strategy, tuned["rate"], seed, task, indices,
                            settings)
        row = {"backbone": source.backbone, "budget": label,
               "labels_per_class": len(indices) // len(task.class_names),
               "strategy": strategy, "seed": seed, "rate": tuned["rate"],
               "epochs": epochs, "diverged": run is None}
        if run is None:
            chance = float(np.mean(test_y == 0))  # a NaN model predicts class 0
            row.update(id_accuracy=chance, ood_accuracy=chance,
                       ood_by_corruption={k: chance for k in kinds}, trainable_params=None)
        else:
            row["id_accuracy"] = score(run.model, test_x, test_y)[0]
            _, _, correct = score(run.model, ood_x, test_y)
            row["ood_accuracy"] = float(correct.mean())
            row["ood_by_corruption"] = {
                name: float(correct[kind == k].mean()) for k, name in enumerate(kinds)}
            row["trainable_params"] = trainable_param_count(run.model)
        row["seconds"] = round(time.perf_counter() - started, 2)
        on_item(row)
        log(f"  {strategy} seed {seed}: ID {row['id_accuracy']:.3f}, "
            f"OOD {row['ood_accuracy']:.3f} (rate {tuned['rate']:g}, {epochs} "
            f"epochs, {row['seconds']:.0f} s)")
    return tuned


def run_accuracy(settings: AccuracySettings, engine=None, *, log: Callable[[str], Any] = print,
                 on_row: Callable[[dict[str, Any]], Any] | None = None,
                 isolate: bool = False) -> dict[str, Any]:
    """Run the benchmark (the module docstring says how).

    Args:
        settings: :class:`AccuracySettings`.
        engine: :class:`~finetunekit.Engine` or None (a new one).
        log: callable taking a line of progress text.
        on_row: callable or None. Called with every row as soon as it is measured.
        isolate: bool. Run each strategy's runs (at each budget) in a fresh process
            (:mod:`.isolation`), with a new default Engine: plugins registered on
            `engine` in code do not reach it (entry points do). The command line
            isolates on TensorFlow, which otherwise keeps every trained model's
            memory (200 MiB per VGG16 run: 14 GB after 60 runs). Workers are spawned:
            a script that calls this needs Python's ``if __name__ == "__main__":``
            guard.

    Returns:
        dict: ``sources`` (per backbone), ``rows`` (one per backbone, budget, strategy
        and seed: ``id_accuracy``, ``ood_accuracy``, ``ood_by_corruption``, ``rate``,
        ``epochs``, ``seconds``, ``trainable_params``, ``diverged``), ``tuning`` (per
        backbone, budget and strategy) and ``not_applicable`` (strategy: reason).
    """
    from finetunekit.bench.isolation import in_child
    from finetunekit.core.engine import Engine

    engine = engine or Engine()
    on_row = on_row or (lambda row: None)
    for name in settings.strategies:
        engine.catalogue.get("strategy", name, key="--strategies")
    if not 1 <= settings.severity <= shift.MAX_SEVERITY:
        raise RecipeError(f"--severity must be 1 to {shift.MAX_SEVERITY}. "
                          f"Received: {settings.severity}.")
    task = (user_task(engine, settings.data, settings.image_size) if settings.data
            else digits_task(settings.image_size, settings.test_per_class))
    shifted = shift.shifted(task.images[task.test], settings.severity, seed=TEST_SEED)
    strategies = [*settings.strategies, RANDOM]
    out: dict[str, Any] = {"sources": {}, "rows": [], "tuning": [], "not_applicable": {},
                           "task": {"test": len(task.test), "pool": len(task.pool),
                                    "classes": task.class_names,
                                    "corruptions": list(shift.CORRUPTIONS),
                                    "severity": settings.severity}}

    def keep(row):
        out["rows"].append(row)
        on_row(row)

    for backbone in settings.backbones:
        source = (given(backbone, settings.image_size, settings.weights) if settings.weights
                  else pretrained(engine, backbone, settings.image_size,
                                  cache=settings.cache and Path(settings.cache),
                                  settings=(settings.sources or {}).get(backbone), log=log))
        out["sources"][backbone] = source.info
        usable = []
        for strategy in strategies:
            reason = applicable(engine, source, strategy, settings, len(task.class_names))
            if reason:
                out["not_applicable"].setdefault(backbone, {})[strategy] = reason
                log(f"{backbone} {strategy}: not applicable: {reason.split('. ')[0]}")
            else:
                usable.append(strategy)
        for budget in settings.budgets:
            log(f"{backbone}, {'all' if budget is None else budget} labels per class")
            for strategy in usable:
                args = (source, strategy, budget, task, shifted, settings)
                tuned = (in_child(measure_strategy, None, *args, log=log, on_item=keep)
                         if isolate else
                         measure_strategy(engine, *args, log=log, on_item=keep))
                out["tuning"].append({"backbone": backbone,
                                      "budget": "all" if budget is None else str(budget),
                                      "strategy": strategy, **tuned})
    return out
