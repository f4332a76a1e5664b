"""The demo's task, as a library: what it trains and how each run is recorded.

:mod:`finetunekit.bench.accuracy` builds its accuracy benchmark on these pieces; the app,
``finetunekit demo``, is :func:`finetunekit.demo.runner.run_demo`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

SOURCE_CLASSES = (0, 1, 2, 3, 4)
"""Digits the source run trains on."""

TARGET_CLASSES = (5, 6, 7, 8, 9)
"""Digits the transfer runs learn from few labels; the source run never sees them."""

SOURCE_WEIGHTS = "source.weights.h5"
"""File name of the source base's weights, beside the run folders."""


@dataclass(frozen=True)
class DemoSettings:
    """What the demo trains, and for how long.

    Args:
        backbone: str. A backbone name (``finetunekit list``). Defaults to ``"vgg16"``.
        input_size: int. Height and width the 8x8 digits are resized to. Defaults to 32.
        batch_size: int. Batch size of every run. Defaults to 8: with few images, more
            steps per epoch.
        schedule: str. ``optimizer.schedule`` of every run. Defaults to ``"constant"``.
        seed: int. ``train.seed`` of every run. Defaults to 0.
        source_train_per_class: int. Training images per source digit.
        source_validation_per_class: int. Validation images per source digit.
        source_epochs: int. Epochs of the source run.
        source_learning_rate: float. Adam learning rate of the source run.
        target_train_per_class: int. Labelled training images per target digit.
        target_validation_per_class: int. Validation images per target digit.
        target_epochs: int. Epochs of every transfer run and the baseline.
        target_learning_rate: float. Adam learning rate of the runs that train the base
            (``partial``, ``full``, the baseline).
        head_learning_rate: float. Adam learning rate of ``feature_extraction``, where
            only the new head trains.
        unfreeze_blocks: int. Blocks the ``partial`` strategy trains. Defaults to 1.
    """

    source_train_per_class: int
    source_validation_per_class: int
    source_epochs: int
    source_learning_rate: float
    target_train_per_class: int
    target_validation_per_class: int
    target_epochs: int
    target_learning_rate: float
    head_learning_rate: float
    backbone: str = "vgg16"
    input_size: int = 32
    batch_size: int = 8
    schedule: str = "constant"
    seed: int = 0
    unfreeze_blocks: int = 1


FULL = DemoSettings(
    source_train_per_class=100, source_validation_per_class=20, source_epochs=2,
    source_learning_rate=1e-4,
    target_train_per_class=10, target_validation_per_class=30, target_epochs=6,
    target_learning_rate=1e-4, head_learning_rate=1e-2,
)
"""Settings of ``finetunekit demo`` (see docs/demo.md for how they were chosen)."""

QUICK = replace(
    FULL, source_train_per_class=40, source_validation_per_class=10, source_epochs=1,
    target_train_per_class=5, target_validation_per_class=10, target_epochs=2,
)
"""Settings of ``finetunekit demo --quick``: a smoke test, too short to compare anything."""


@dataclass(frozen=True)
class Variant:
    """One transfer run of the comparison.

    Args:
        name: str. Run folder name and row label.
        strategy: dict. The recipe's ``[strategy]`` section.
        transferred: bool. Start from the source weights (else from random weights).
    """

    name: str
    strategy: dict[str, Any]
    transferred: bool


def variants(settings: DemoSettings) -> list[Variant]:
    """The four runs on the target digits, in the order the table shows them."""
    return [
        Variant("feature_extraction", {"name": "feature_extraction"}, True),
        Variant("partial", {"name": "partial", "unfreeze_blocks": settings.unfreeze_blocks}, True),
        Variant("full", {"name": "full"}, True),
        Variant("full_random", {"name": "full"}, False),
    ]


def demo_recipe(settings: DemoSettings, *, classes, train_per_class: int,
                validation_per_class: int, epochs: int, learning_rate: float,
                strategy: dict[str, Any], weights: str, path: Path):
    """A plain recipe on the embedded digits; every demo run is one of these."""
    from finetunekit.core.recipe import Recipe

    size = settings.input_size
    return Recipe.from_dict({
        "backbone": {"name": settings.backbone, "weights": weights, "input_shape": [size, size, 3]},
        "strategy": strategy,
        "head": {"classes": len(classes)},
        "optimizer": {"name": "adam", "learning_rate": learning_rate,
                      "schedule": settings.schedule},
        "data": {"source": "digits", "classes": list(classes), "batch_size": settings.batch_size,
                 "train_per_class": train_per_class,
                 "validation_per_class": validation_per_class},
        "train": {"epochs": epochs, "seed": settings.seed},
        # the demo is short and never resumed: no per-epoch checkpoints
        "save": {"path": str(path), "keep_checkpoints": 0},
    })


def source_recipe(settings: DemoSettings, path: Path):
    """The source run: every layer trains, from random weights, on the digits 0-4."""
    return demo_recipe(
        settings, classes=SOURCE_CLASSES, train_per_class=settings.source_train_per_class,
        validation_per_class=settings.source_validation_per_class,
        epochs=settings.source_epochs, learning_rate=settings.source_learning_rate,
        strategy={"name": "full"}, weights="none", path=path,
    )


def target_recipe(settings: DemoSettings, variant: Variant, source_weights: Path, path: Path):
    """One run of the comparison on the digits 5-9, from few labels."""
    head_only = variant.strategy["name"] == "feature_extraction"
    return demo_recipe(
        settings, classes=TARGET_CLASSES, train_per_class=settings.target_train_per_class,
        validation_per_class=settings.target_validation_per_class,
        epochs=settings.target_epochs,
        learning_rate=settings.head_learning_rate if head_only else settings.target_learning_rate,
        strategy=variant.strategy, weights=str(source_weights) if variant.transferred else "none",
        path=path,
    )



def train_source(engine, settings: DemoSettings, out: Path, *, keep: bool = False):
    """Train the source run (digits 0-4, random weights) and save its base's weights.

    Args:
        engine: the :class:`~finetunekit.Engine` to train with.
        settings: :class:`DemoSettings`.
        out: Path. Folder for ``source.weights.h5`` (and the run folder ``source/``).
        keep: bool. Write the source run folder too.

    Returns:
        tuple: the source :class:`~finetunekit.Run` and the path of its base's weights,
        which a recipe names as ``backbone.weights``.
    """
    source = engine.run(source_recipe(settings, out / "source"), save=keep)
    weights = out / SOURCE_WEIGHTS
    source.base.save_weights(str(weights))
    return source, weights


def table_row(task: str, strategy: str, transferred: bool, run, seconds: float,
              images: tuple[int, int]) -> dict[str, Any]:
    """One row of the demo's table and ``demo.json``: a finished run, measured.

    Args:
        task: str. ``"source"`` or ``"target"``.
        strategy: str. The strategy the run used.
        transferred: bool. The run started from the source weights.
        run: the finished :class:`~finetunekit.Run`.
        seconds: float. Wall time of the run.
        images: ``(train, validation)`` image counts.
    """
    from finetunekit.plugins.strategies.freezing import trainable_param_count

    last = run.history[-1] if run.history else {}
    return {
        "task": task,
        "strategy": strategy,
        "weights": "transferred" if transferred else "random",
        "trainable_params": trainable_param_count(run.model),
        "total_params": int(run.model.count_params()),
        "train_images": images[0],
        "validation_images": images[1],
        "epochs": len(run.history),
        "train_accuracy": last.get("accuracy"),
        "val_accuracy": last.get("val_accuracy"),
        "val_loss": last.get("val_loss"),
        "seconds": round(seconds, 1),
        "run_folder": run.path.name if run.path else None,  # None: not kept
    }
