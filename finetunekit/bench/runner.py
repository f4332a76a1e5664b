"""What ``finetunekit bench`` does: check every name first, measure, print, write.

The command and its options are :mod:`finetunekit.bench.command`."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from finetunekit.bench import accuracy as acc
from finetunekit.bench import accuracy_report
from finetunekit.bench import report
from finetunekit.bench.throughput import (
    HUB_MODELS,
    SEED_STRATEGIES,
    Config,
    check_precision,
    device_name,
    hub_preset,
    measure,
)
from finetunekit.core.errors import RecipeError

PREFERRED_ORDER = ("feature_extraction", "partial", "full", "two_stage", "gradual",
                   "discriminative", "bitfit", "norm_only", "lora", "l2sp")
"""Table order of the built-in strategies, simplest first; plugins' follow by name."""


def all_strategies(engine) -> list[str]:
    """Every registered strategy, built-ins in :data:`PREFERRED_ORDER` first."""
    names = engine.catalogue.names("strategy")
    return [n for n in PREFERRED_ORDER if n in names] + [n for n in names if n not in PREFERRED_ORDER]


def run_bench(*, backbones: list[str], strategies: list[str], image_size: int | None,
              batch_sizes: list[int], precisions: list[str], steps: int, repeats: int,
              accuracy: bool, seeds: int | None, quick: bool, weights: str | None,
              data: str | None, out: Path, command: str, console=None,
              accuracy_options: dict[str, Any] | None = None, end_to_end: bool = False,
              sources: list[str] | None = None, epochs: int = 2,
              run_folder: bool = True) -> dict[str, Any]:
    """Run ``finetunekit bench`` (the options as in ``finetunekit bench --help``).

    Every name is checked, and ``out`` too, before anything trains, so a typo fails in
    a second with exit code 2, not after minutes of measuring. `accuracy_options` are
    more :class:`~finetunekit.bench.accuracy.AccuracySettings` keys (``budgets``,
    ``rates``, ``severity``, ``cache``).

    Returns:
        dict: what ``bench.json`` holds.
    """
    import keras
    from rich.console import Console

    from finetunekit.bench import end_to_end as e2e
    from finetunekit.core.engine import Engine

    console = console or Console()
    engine = Engine()
    chosen_backbones = backbones
    backbones = backbones or ["vgg16"]
    for name in backbones:
        # throughput builds its KerasHub ViTs itself; the accuracy benchmark its tiny ViT
        if not (accuracy and name == "vit_tiny") and (accuracy or name not in HUB_MODELS):
            engine.catalogue.get("backbone", name, key="--backbones")
    if accuracy and end_to_end:
        raise RecipeError("--accuracy and --end-to-end are two benchmarks; pass one of them.")
    if not strategies and not (accuracy and quick):
        strategies = (all_strategies(engine) if accuracy else ["full"] if end_to_end
                      else list(SEED_STRATEGIES))
    for name in strategies:
        engine.catalogue.get("strategy", name, key="--strategies")
    precisions = [check_precision(p) for p in precisions or ["float32"]]
    sources = [e2e.check_source(s) for s in sources or e2e.SOURCES]
    report.check_out(out)
    report.check_matplotlib()
    result: dict[str, Any] = {"command": command, "backend": keras.backend.backend(),
                              "device": device_name()}

    if accuracy:
        if precisions != ["float32"] or len(batch_sizes) > 1:
            raise RecipeError(
                "--accuracy takes one batch size and float32. Received: "
                f"--batch-size {batch_sizes}, --precision {','.join(precisions)}.")
        settings = accuracy_settings(
            strategies=strategies, backbones=chosen_backbones, seeds=seeds, quick=quick,
            image_size=image_size, batch_size=batch_sizes[0] if batch_sizes else None,
            weights=weights, data=data, **(accuracy_options or {}))
        progress = out / "rows.partial.jsonl"

        def keep(row):  # rows as they come: a run cut short keeps what it measured
            out.mkdir(parents=True, exist_ok=True)
            with progress.open("a", encoding="utf-8") as file:
                file.write(json.dumps(row) + "\n")

        # TensorFlow keeps every trained model's memory (bench/isolation.py): each
        # strategy's runs in a process of their own
        measured = acc.run_accuracy(settings, engine, log=console.print, on_row=keep,
                                    isolate=keras.backend.backend() == "tensorflow")
        summary = accuracy_report.summarise(measured)
        result["accuracy"] = {"settings": asdict(settings), **measured, "summary": summary}
        for backbone in settings.backbones:
            console.print(accuracy_report.table(summary, backbone), soft_wrap=True,
                          highlight=False)
    elif end_to_end:
        rows = []
        for backbone in backbones:
            for strategy in strategies:
                for batch in batch_sizes or [8]:
                    for precision in precisions:
                        for source in sources:
                            config = e2e.EndToEndConfig(
                                backbone=backbone, strategy=strategy, batch_size=batch,
                                precision=precision, image_size=image_size or 32, steps=steps,
                                epochs=epochs, repeats=repeats, source=source,
                                run_folder=run_folder)
                            row = e2e.measure_end_to_end(config)
                            rows.append(row)
                            console.print(
                                f"{row['id']}: Engine.run {row['engine_images_per_s']:,.1f} "
                                f"img/s, plain fit {row['plain_images_per_s']:,.1f} img/s, "
                                f"ratio {row['ratio']:.3f} ({row['ratio_min']:.3f}-"
                                f"{row['ratio_max']:.3f}); {row['between_epochs_s']:.2f} s "
                                "between epochs")
        result["end_to_end"] = rows
        console.print(report.end_to_end_table(rows), soft_wrap=True, highlight=False)
    else:
        rows = []
        presets: dict[tuple[str, int], str] = {}
        folder = tempfile.TemporaryDirectory(prefix="finetunekit-bench-")
        for backbone in backbones:
            for strategy in strategies:
                for batch in batch_sizes or [8]:
                    for precision in precisions:
                        config = Config(backbone=backbone, strategy=strategy, batch_size=batch,
                                        precision=precision, image_size=image_size or 32,
                                        steps=steps, repeats=repeats)
                        preset = (hub_preset(config, presets, folder.name)
                                  if backbone in HUB_MODELS else None)
                        row = measure(config, engine, preset)
                        rows.append(row)
                        console.print(
                            f"{row['id']}: finetunekit {row['images_per_s']:,.1f} img/s, plain "
                            f"seed code {row['baseline_images_per_s']:,.1f} img/s, ratio "
                            f"{row['ratio']:.2f}; plain fed uint8 "
                            f"{row['plain_uint8_images_per_s']:,.1f} img/s, ratio "
                            f"{row['ratio_uint8']:.2f}")
        folder.cleanup()
        result["throughput"] = rows
        console.print(report.throughput_table(rows), soft_wrap=True, highlight=False)
    written = report.write(result, out)
    if accuracy:
        progress.unlink(missing_ok=True)
    console.print(f"wrote {', '.join(str(p) for p in written)}")
    return result


def merge_bench(folders: list[Path], out: Path, console=None) -> dict[str, Any]:
    """``bench --merge``: the accuracy results in `folders` as one result in `out`
    (:mod:`finetunekit.bench.merge`); returns what ``bench.json`` holds."""
    from rich.console import Console

    from finetunekit.bench import merge

    console = console or Console()
    report.check_out(out)
    report.check_matplotlib()
    result = merge.merge([merge.load(folder) for folder in folders],
                         [str(folder) for folder in folders])
    for backbone in result["accuracy"]["settings"]["backbones"]:
        console.print(accuracy_report.table(result["accuracy"]["summary"], backbone),
                      soft_wrap=True, highlight=False)
    written = report.write(result, out)
    console.print(f"wrote {', '.join(str(p) for p in written)}")
    return result


def accuracy_settings(*, strategies: list[str], backbones: list[str], seeds: int | None,
                      quick: bool, image_size: int | None, batch_size: int | None,
                      weights: str | None, data: str | None, **options: Any,
                      ) -> acc.AccuracySettings:
    """The settings of ``bench --accuracy``: :data:`~finetunekit.bench.accuracy.QUICK`
    under ``--quick``, else the defaults; options given on the command line win."""
    chosen: dict[str, Any] = dict(acc.QUICK) if quick else {}
    if strategies:
        chosen["strategies"] = tuple(strategies)
    if backbones:
        chosen["backbones"] = tuple(backbones)
    if seeds is not None:
        chosen["seeds"] = tuple(range(seeds))
    for key, value in (("image_size", image_size), ("batch_size", batch_size),
                       ("weights", weights), ("data", data), *options.items()):
        if value is not None:
            chosen[key] = tuple(value) if isinstance(value, list) else value
    return acc.AccuracySettings(**chosen)
