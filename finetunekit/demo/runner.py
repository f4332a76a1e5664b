"""``finetunekit demo``'s app: train the source run and the four transfer runs, print the
table, write the run folders, ``demo.json`` and the comparison of the transfer runs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from finetunekit.core.errors import PersistenceError
from finetunekit.core.manager import hookimpl
from finetunekit.demo.task import (
    FULL,
    QUICK,
    SOURCE_CLASSES,
    SOURCE_WEIGHTS,
    TARGET_CLASSES,
    DemoSettings,
    Variant,
    table_row,
    target_recipe,
    train_source,
    variants,
)
from finetunekit.results.compare import COMPARE_FILES, compare_rows, write_compare


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


RESULTS_ROOT = Path("demo-results")
"""Where ``finetunekit demo`` keeps its results without ``--out``: a fresh sub-folder."""


def fresh_folder(root: Path = RESULTS_ROOT) -> Path:
    """``root/<date>-<time>`` (``-2``, ``-3``, ... if taken): a folder that does not exist."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out, n = root / stamp, 1
    while out.exists():
        n += 1
        out = root / f"{stamp}-{n}"
    return out


def _check_out(out: Path, names: list[str]) -> None:
    if out.exists() and not out.is_dir():
        raise PersistenceError(f"--out must be a folder. Received: '{out}', which is a file.")
    taken = [n for n in [*names, SOURCE_WEIGHTS, "demo.json", *COMPARE_FILES] if (out / n).exists()]
    if taken:
        raise PersistenceError(
            f"'{out}' already holds a demo ({', '.join(taken[:3])}); the demo does not "
            "overwrite runs. Pass another --out, or delete that folder first."
        )


def run_demo(out: Path | None = None, quick: bool = False, *,
             settings: DemoSettings | None = None, console=None) -> list[dict[str, Any]]:
    """Run the demo, print its table, write its run folders, ``demo.json`` and the
    comparison of the transfer runs (``compare.md``, ``compare.json``, ``compare.png``).

    Args:
        out: Path or None. Folder for the run folders, the source weights, ``demo.json``
            and the comparison. None: a fresh folder under ``demo-results/``
            (:func:`fresh_folder`).
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
    out = Path(out) if out is not None else fresh_folder()
    _check_out(out, ["source", *(v.name for v in runs)])
    out.mkdir(parents=True, exist_ok=True)
    rows = _run_all(out, settings, runs, console, quick, keep=True)
    write_compare(out, compare_rows([out / v.name for v in runs]))
    console.print(f"Run folders, {SOURCE_WEIGHTS}, demo.json and the comparison "
                  f"(compare.md, compare.png) in {out}")
    return rows


def _run_all(out: Path, settings: DemoSettings, runs: list[Variant], console, quick: bool,
             *, keep: bool) -> list[dict[str, Any]]:
    from finetunekit.core.engine import Engine
    from finetunekit.core.run_folder import atomic_write  # imports Keras: not at module level

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
        rows.append(table_row("source", "full", False, source, time.perf_counter() - t,
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
            rows.append(table_row("target", variant.strategy["name"], variant.transferred, run,
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
