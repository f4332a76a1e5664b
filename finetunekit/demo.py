"""``finetunekit demo``: transfer learning on the embedded digits, measured end to end.

There are no ImageNet weights offline, so the demo makes its own transfer source, and
says so: it first trains a backbone from random weights on the digits 0-4 (the
"source" run) and saves the base's weights. It then learns the digits 5-9 from a few
labelled images per class four ways, with the same data, epochs, batch size and seed:

- ``feature_extraction``: the transferred base frozen, only the head trains;
- ``partial``: the transferred base's last block(s) and the head train;
- ``full``: every layer of the transferred base trains;
- ``full`` from random weights: the same recipe without transfer, the baseline.

Every run goes through :meth:`finetunekit.Engine.run` with a plain recipe, so the
demo shows nothing a user's recipe could not do. It prints a table (strategy, weights,
trainable parameters, validation accuracy, wall seconds) and, given a folder, writes the
run folders and ``demo.json`` with the same rows.

The images are scikit-learn's real 8x8 scans, upscaled: the numbers show what transfer
does on a small, easy domain, not what ImageNet weights do on photographs. docs/demo.md
has the figures measured with these settings, over three seeds.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from finetunekit.core.errors import PersistenceError
from finetunekit.core.run_folder import atomic_write
from finetunekit.core.manager import hookimpl

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


class EpochStatus:
    """A lifecycle plugin that shows the current run's epoch on one transient line."""

    def __init__(self, update: Callable[[str], None]):
        self.update = update
        self.label = ""

    @hookimpl
    def finetunekit_epoch_end(self, run, stage, epoch, logs):
        accuracy = logs.get("val_accuracy")
        shown = "" if accuracy is None else f", validation accuracy {accuracy:.3f}"
        self.update(f"{self.label}: epoch {epoch}/{run.plan.epochs}{shown}")


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


def _row(task: str, strategy: str, transferred: bool, run, seconds: float,
         images: tuple[int, int]) -> dict[str, Any]:
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


def print_table(rows: list[dict[str, Any]], console, title: str) -> None:
    """Print the demo's rows as a rich table."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD)
    table.add_column("task")
    table.add_column("strategy", no_wrap=True)
    table.add_column("weights")
    table.add_column("trainable", justify="right")
    table.add_column("val acc", justify="right")
    table.add_column("seconds", justify="right")
    for row in rows:
        accuracy = row["val_accuracy"]
        table.add_row(row["task"], row["strategy"], row["weights"],
                      f"{row['trainable_params']:,}",
                      "-" if accuracy is None else f"{accuracy:.3f}", f"{row['seconds']:.1f}",
                      end_section=row["task"] == "source")
    console.print(table)


def _check_out(out: Path, names: list[str]) -> None:
    if out.exists() and not out.is_dir():
        raise PersistenceError(f"--out must be a folder. Received: '{out}', which is a file.")
    taken = [n for n in [*names, SOURCE_WEIGHTS, "demo.json"] if (out / n).exists()]
    if taken:
        raise PersistenceError(
            f"'{out}' already holds a demo ({', '.join(taken[:3])}); the demo does not "
            "overwrite runs. Pass another --out, or delete that folder first."
        )


def run_demo(out: Path | None = None, quick: bool = False, *,
             settings: DemoSettings | None = None, console=None) -> list[dict[str, Any]]:
    """Run the demo, print its table, write its run folders and ``demo.json``.

    Args:
        out: Path or None. Folder for the run folders, the source weights and
            ``demo.json``. None: no run folders; the source weights go to a temporary
            folder, deleted at the end.
        quick: bool. Use :data:`QUICK` (a smoke test) instead of :data:`FULL`.
        settings: :class:`DemoSettings` or None. Overrides both.
        console: rich Console or None. Where to print; stdout by default.

    Returns:
        list of dict: the table's rows, source run first.

    Raises:
        PersistenceError: `out` already holds a demo.
    """
    from rich.console import Console

    settings = settings or (QUICK if quick else FULL)
    console = console or Console()
    runs = variants(settings)
    if out is None:
        with tempfile.TemporaryDirectory(prefix="finetunekit-demo-") as tmp:
            rows = _run_all(Path(tmp), settings, runs, console, quick, keep=False)
        console.print("Pass --out DIR to keep the run folders and demo.json.")
        return rows
    out = Path(out)
    _check_out(out, ["source", *(v.name for v in runs)])
    out.mkdir(parents=True, exist_ok=True)
    rows = _run_all(out, settings, runs, console, quick, keep=True)
    console.print(f"Run folders, {SOURCE_WEIGHTS} and demo.json in {out}")
    return rows


def _run_all(out: Path, settings: DemoSettings, runs: list[Variant], console, quick: bool,
             *, keep: bool) -> list[dict[str, Any]]:
    from finetunekit.core.engine import Engine

    started = time.perf_counter()
    n_source = len(SOURCE_CLASSES)
    n_target = len(TARGET_CLASSES)
    console.print(
        f"[bold]finetunekit demo[/]{' (quick)' if quick else ''}: {settings.backbone} at "
        f"{settings.input_size}x{settings.input_size} on scikit-learn's handwritten digits. "
        f"Source: digits 0-4 from random weights, {settings.source_train_per_class} images "
        f"per digit. Transfer: digits 5-9 from {settings.target_train_per_class} labelled "
        f"images per digit, {settings.target_epochs} epochs each, seed {settings.seed}."
    )
    with console.status("starting") as status:
        progress = EpochStatus(status.update)
        engine = Engine(plugins=[progress])
        rows = []

        progress.label = "source (digits 0-4, random weights)"
        t = time.perf_counter()
        source, weights = train_source(engine, settings, out, keep=keep)
        rows.append(_row("source", "full", False, source, time.perf_counter() - t,
                         (settings.source_train_per_class * n_source,
                          settings.source_validation_per_class * n_source)))
        _report(console, rows[-1])

        recipes = [target_recipe(settings, v, weights, out / v.name) for v in runs]
        # the four target recipes share their [data] section: load it once
        data = engine.load_data(recipes[0])
        for variant, recipe in zip(runs, recipes):
            progress.label = (f"{variant.strategy['name']} "
                              f"({'transferred' if variant.transferred else 'random'} weights)")
            t = time.perf_counter()
            run = engine.run(recipe, data=data, save=keep)
            rows.append(_row("target", variant.strategy["name"], variant.transferred, run,
                             time.perf_counter() - t,
                             (settings.target_train_per_class * n_target,
                              settings.target_validation_per_class * n_target)))
            _report(console, rows[-1])

    total = time.perf_counter() - started
    print_table(rows, console, title=(
        f"{settings.backbone} {settings.input_size}x{settings.input_size}: source digits 0-4, "
        f"target digits 5-9 ({settings.target_train_per_class} labels per digit)"))
    console.print(
        f"total {total:.1f} s. val acc: the last epoch's, on "
        f"{settings.target_validation_per_class * len(TARGET_CLASSES)} target images, one "
        f"seed. 'random' is the 'full' recipe without the source weights.")
    atomic_write(out / "demo.json", json.dumps(
        {"settings": asdict(settings), "quick": quick, "source_classes": list(SOURCE_CLASSES),
         "target_classes": list(TARGET_CLASSES), "seconds": round(total, 1), "rows": rows},
        indent=2))
    return rows


def _report(console, row: dict[str, Any]) -> None:
    accuracy = row["val_accuracy"]
    shown = "-" if accuracy is None else f"{accuracy:.3f}"
    label = f"{row['task']}: {row['strategy']}, {row['weights']} weights"
    console.print(f"  {label:<47} val accuracy {shown} {row['seconds']:>6.1f} s")
