"""Accuracy per strategy on a real transfer task, over seeds, on equal terms.

The task is the demo's (:mod:`finetunekit.demo.task`): real pretrained weights made offline by
training a backbone from random weights on scikit-learn's digits 0-4 (the source), then
learning the digits 5-9 from a few labels per digit. The source is trained once and
stays fixed, as ImageNet weights would; each seed changes the target's train/validation
split, the new head's initialisation and the batch order. Every strategy gets the same
data, the same ``train.epochs`` (multi-stage strategies split them), batch size and
seeds, with its default keys. The learning rate is the demo's head rate (1e-2) for a
strategy that keeps the pretrained weights essentially frozen (it trains under
:data:`FEW_PARAMETERS` of the base in every stage: ``feature_extraction``, ``bitfit``,
``lora``, ``norm_only``), and the demo's base rate (1e-4) for the others, which update
pretrained weights. The rule reads the plan, not the name, so a third-party strategy is
treated the same way. A ``full`` run from random weights is the no-transfer baseline.

With ``weights`` (``"imagenet"`` or a weights file) no source is trained; with ``data``
(a folder holding ``train/`` and ``validation/``, one sub-folder per class) the runs
train on it instead of the digits 5-9.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from finetunekit.bench.throughput import SEED_STRATEGIES
from finetunekit.core.errors import DataError, RecipeError
from finetunekit.demo.task import FULL, DemoSettings, Variant, target_recipe, train_source

FEW_PARAMETERS = 0.05
"""Share of the base's parameters below which a strategy trains at the head rate."""

RANDOM = "full_random"
"""Row label of the no-transfer baseline: the ``full`` recipe from random weights."""


@dataclass(frozen=True)
class AccuracySettings:
    """What the accuracy benchmark trains.

    Args:
        strategies: tuple of str. Strategy names, in table order.
        seeds: tuple of int. ``train.seed`` of each repeat (at least 3 for a std).
        demo: :class:`~finetunekit.demo.DemoSettings`. Backbone, sizes, epochs and rates
            (its ``seed`` is the source run's).
        weights: str or None. ``"imagenet"`` or a weights file: skip the source run.
        data: str or None. A folder with ``train/`` and ``validation/`` class folders.
    """

    strategies: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    demo: DemoSettings = field(default_factory=lambda: FULL)
    weights: str | None = None
    data: str | None = None


def strategy_section(name: str, demo: DemoSettings) -> dict[str, Any]:
    """The ``[strategy]`` section of a strategy: its defaults, and the demo's block for
    ``partial`` (which has no default block)."""
    if name == "partial":
        return {"name": name, "unfreeze_blocks": demo.unfreeze_blocks}
    return {"name": name}


def user_data_section(folder: str) -> tuple[dict[str, Any], int]:
    """``[data]`` for a user's folder with ``train/`` and ``validation/``, and its classes."""
    root = Path(folder)
    train, validation = root / "train", root / "validation"
    if not train.is_dir() or not validation.is_dir():
        raise DataError(
            f"--data must be a folder holding 'train/' and 'validation/', each with one "
            f"sub-folder of images per class. Received: '{root}'."
        )
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    return {"source": "folder", "train": str(train), "validation": str(validation)}, len(classes)


def recipe_for(settings: AccuracySettings, demo: DemoSettings, variant: Variant,
               weights: str, path: Path, *, head_rate: bool = False):
    """The demo's target recipe for `variant`, on the user's data if one was given;
    at the demo's head learning rate if `head_rate`."""
    recipe = target_recipe(demo, variant, Path(weights), path)
    if head_rate:
        recipe = recipe.with_overrides({"optimizer.learning_rate": demo.head_learning_rate})
    if settings.data is None:
        return recipe
    from finetunekit.core.recipe import Recipe

    data, classes = user_data_section(settings.data)
    sections = recipe.to_dict()
    sections["data"] = {**data, "batch_size": demo.batch_size}
    sections["head"] = {**sections["head"], "classes": classes}
    return Recipe.from_dict(sections)


def run_accuracy(settings: AccuracySettings, engine=None, *, log=print) -> list[dict[str, Any]]:
    """Train every strategy and the random-weights baseline for every seed.

    Args:
        settings: :class:`AccuracySettings`.
        engine: :class:`~finetunekit.Engine` or None (a new one).
        log: callable taking a line of progress text.

    Returns:
        list of dict: one row per (strategy, seed): ``strategy``, ``weights``, ``seed``,
        ``val_accuracy``, ``seconds``, ``trainable_params``. Before them, a row with
        ``not_applicable`` (the reason) for each strategy that cannot plan on the
        backbone, then the source run's (if one was trained), ``strategy = "source"``.
    """
    from finetunekit.core.engine import Engine
    from finetunekit.plugins.strategies.freezing import trainable_param_count

    engine = engine or Engine()
    for name in settings.strategies:
        engine.catalogue.get("strategy", name, key="--strategies")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="finetunekit-bench-") as tmp:
        runs = [Variant(n, strategy_section(n, settings.demo), True) for n in settings.strategies]
        runs.append(Variant(RANDOM, {"name": "full"}, False))
        # before anything trains: the baseline's recipe must build (backbone, input
        # size, --data); a strategy that then fails to plan gets a "not applicable" row
        engine.build(recipe_for(settings, settings.demo, runs[-1], "none", Path(tmp) / "check"))
        shares = {v.name: _base_share(engine, settings, v, Path(tmp), rows, log) for v in runs}
        runs = [v for v in runs if shares[v.name] is not None]
        weights = settings.weights
        if weights is None:
            started = time.perf_counter()
            source, path = train_source(engine, settings.demo, Path(tmp))
            weights = str(path)
            rows.append({"strategy": "source", "weights": "random", "seed": settings.demo.seed,
                         "val_accuracy": source.history[-1].get("val_accuracy"),
                         "seconds": round(time.perf_counter() - started, 2),
                         "trainable_params": trainable_param_count(source.model)})
            log(f"source (digits 0-4): val accuracy {rows[-1]['val_accuracy']:.3f}")
        for seed in settings.seeds:
            demo = replace(settings.demo, seed=seed)
            recipes = [recipe_for(settings, demo, v, weights, Path(tmp) / v.name,
                                  head_rate=shares[v.name] < FEW_PARAMETERS) for v in runs]
            data = engine.load_data(recipes[0])  # the same data for every strategy
            for variant, recipe in zip(runs, recipes):
                started = time.perf_counter()
                run = engine.run(recipe, data=data, save=False)
                rows.append({
                    "strategy": variant.name,
                    "weights": "transferred" if variant.transferred else "random",
                    "seed": seed,
                    "val_accuracy": run.history[-1].get("val_accuracy"),
                    "seconds": round(time.perf_counter() - started, 2),
                    "trainable_params": trainable_param_count(run.model),
                })
                log(f"seed {seed} {variant.name}: val accuracy {rows[-1]['val_accuracy']:.3f} "
                    f"({rows[-1]['seconds']:.1f} s)")
    return rows


def _base_share(engine, settings: AccuracySettings, variant: Variant, tmp: Path,
                rows: list[dict[str, Any]], log) -> float | None:
    """The largest share of the base's parameters any stage of the strategy trains, or
    None if it cannot plan on this backbone (``norm_only`` cannot on VGG16, which has no
    normalisation layers): then a row saying why, and no runs."""
    from finetunekit.plugins.strategies.freezing import trainable_param_count

    try:
        run = engine.build(recipe_for(settings, settings.demo, variant, "none", tmp / "x"))
    except RecipeError as exc:
        rows.append({"strategy": variant.name, "weights": "transferred", "seed": None,
                     "val_accuracy": None, "seconds": None, "trainable_params": None,
                     "not_applicable": str(exc)})
        log(f"{variant.name}: not applicable here: {exc}")
        return None
    total = max(1, run.base.count_params())
    shares = []
    for index in range(len(run.plan.stages)):
        engine.prepare_stage(run, index)
        shares.append(trainable_param_count(run.base) / total)
    return max(shares)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per strategy over seeds: mean and std of accuracy, mean seconds, and which
    simpler strategies beat it.

    A strategy is *simpler* than another when it trains fewer parameters, or as many and
    is one of the seed's recipes (``full``) while the other is not; a strategy "loses to"
    every simpler one (and to the random-weights baseline) whose mean accuracy is higher.
    ``within_std`` lists those of them whose lead is no larger than the two stds summed. The source row is left out; a strategy that does not apply to the
    backbone gets an entry with ``not_applicable`` (the reason) and nothing else.
    """
    by_name: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["strategy"] != "source":
            by_name.setdefault(row["strategy"], []).append(row)
    summary = []
    skipped = []
    for name, group in by_name.items():
        if group[0].get("not_applicable"):
            skipped.append({"strategy": name, "not_applicable": group[0]["not_applicable"]})
            continue
        accuracies = [r["val_accuracy"] for r in group]
        summary.append({
            "strategy": name,
            "weights": group[0]["weights"],
            "seeds": len(group),
            "mean": round(statistics.fmean(accuracies), 4),
            "std": round(statistics.stdev(accuracies), 4) if len(group) > 1 else 0.0,
            "seconds": round(statistics.fmean(r["seconds"] for r in group), 2),
            "trainable_params": group[0]["trainable_params"],
        })
    def simpler(a: dict[str, Any], b: dict[str, Any]) -> bool:
        # fewer trainable parameters; at equal count, one of the seed's recipes (full)
        # is simpler than a strategy that adds stages, rates or penalties to it
        return (a["trainable_params"], a["strategy"] not in SEED_STRATEGIES) < (
            b["trainable_params"], b["strategy"] not in SEED_STRATEGIES)

    for entry in summary:
        beaten_by = [other for other in summary
                     if other is not entry and entry["strategy"] != RANDOM
                     and other["mean"] > entry["mean"]
                     and (other["strategy"] == RANDOM or simpler(other, entry))]
        entry["loses_to"] = [other["strategy"] for other in beaten_by]
        # a gap smaller than the two stds together is not a clear loss
        entry["within_std"] = [other["strategy"] for other in beaten_by
                               if other["mean"] - entry["mean"] <= other["std"] + entry["std"]]
    return summary + skipped
