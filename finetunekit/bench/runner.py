"""What ``finetunekit bench`` does: check every name first, measure, print, write.

The command and its options are :mod:`finetunekit.bench.command`."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from finetunekit.bench import accuracy as acc
from finetunekit.bench import report
from finetunekit.bench.throughput import (
    SEED_STRATEGIES,
    Config,
    check_precision,
    device_name,
    measure,
)
from finetunekit.core.errors import RecipeError
from finetunekit.demo.task import FULL, QUICK

PREFERRED_ORDER = ("feature_extraction", "partial", "full", "two_stage", "gradual",
                   "discriminative", "bitfit", "norm_only", "lora", "l2sp")
"""Table order of the built-in strategies, simplest first; plugins' follow by name."""


def all_strategies(engine) -> list[str]:
    """Every registered strategy, built-ins in :data:`PREFERRED_ORDER` first."""
    names = engine.catalogue.names("strategy")
    return [n for n in PREFERRED_ORDER if n in names] + [n for n in names if n not in PREFERRED_ORDER]


def run_bench(*, backbones: list[str], strategies: list[str], image_size: int | None,
              batch_sizes: list[int], precisions: list[str], steps: int, repeats: int,
              accuracy: bool, seeds: int, quick: bool, weights: str | None, data: str | None,
              out: Path, command: str, console=None, end_to_end: bool = False,
              sources: list[str] | None = None, epochs: int = 2,
              run_folder: bool = True) -> dict[str, Any]:
    """Run ``finetunekit bench`` (the options as in ``finetunekit bench --help``).

    Every name is checked, and ``out`` too, before anything trains, so a typo fails in
    a second with exit code 2, not after minutes of measuring.

    Returns:
        dict: what ``bench.json`` holds.
    """
    import keras
    from rich.console import Console

    from finetunekit.bench import end_to_end as e2e
    from finetunekit.core.engine import Engine

    console = console or Console()
    engine = Engine()
    backbones = backbones or ["vgg16"]
    for name in backbones:
        engine.catalogue.get("backbone", name, key="--backbones")
    if accuracy and end_to_end:
        raise RecipeError("--accuracy and --end-to-end are two benchmarks; pass one of them.")
    default = (all_strategies(engine) if accuracy else ["full"] if end_to_end
               else list(SEED_STRATEGIES))
    strategies = strategies or default
    for name in strategies:
        engine.catalogue.get("strategy", name, key="--strategies")
    precisions = [check_precision(p) for p in precisions or ["float32"]]
    sources = [e2e.check_source(s) for s in sources or e2e.SOURCES]
    report.check_out(out)
    report.check_matplotlib()
    result: dict[str, Any] = {"command": command, "backend": keras.backend.backend(),
                              "device": device_name()}

    if accuracy:
        if len(backbones) > 1 or precisions != ["float32"] or len(batch_sizes) > 1:
            raise RecipeError(
                "--accuracy takes one backbone, one batch size and float32. Received: "
                f"--backbones {','.join(backbones)}, --batch-size {batch_sizes}, "
                f"--precision {','.join(precisions)}."
            )
        demo = QUICK if quick else FULL
        demo = replace(demo, backbone=backbones[0],
                       input_size=image_size or demo.input_size,
                       batch_size=batch_sizes[0] if batch_sizes else demo.batch_size)
        settings = acc.AccuracySettings(strategies=tuple(strategies), seeds=tuple(range(seeds)),
                                        demo=demo, weights=weights, data=data)
        rows = acc.run_accuracy(settings, engine, log=console.print)
        summary = acc.summarise(rows)
        result["accuracy"] = {"settings": _plain(settings), "rows": rows, "summary": summary}
        console.print(report.accuracy_table(summary), soft_wrap=True, highlight=False)
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
        for backbone in backbones:
            for strategy in strategies:
                for batch in batch_sizes or [8]:
                    for precision in precisions:
                        config = Config(backbone=backbone, strategy=strategy, batch_size=batch,
                                        precision=precision, image_size=image_size or 32,
                                        steps=steps, repeats=repeats)
                        row = measure(config, engine)
                        rows.append(row)
                        console.print(
                            f"{row['id']}: finetunekit {row['images_per_s']:,.1f} img/s, plain "
                            f"seed code {row['baseline_images_per_s']:,.1f} img/s, ratio "
                            f"{row['ratio']:.2f}; plain fed uint8 "
                            f"{row['plain_uint8_images_per_s']:,.1f} img/s, ratio "
                            f"{row['ratio_uint8']:.2f}")
        result["throughput"] = rows
        console.print(report.throughput_table(rows), soft_wrap=True, highlight=False)
    written = report.write(result, out)
    console.print(f"wrote {', '.join(str(p) for p in written)}")
    return result


def _plain(settings: acc.AccuracySettings) -> dict[str, Any]:
    return asdict(settings)
