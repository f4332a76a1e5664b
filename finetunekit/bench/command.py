"""``finetunekit bench``: a command plugin (``finetunekit_register_commands``); the
options are parsed here, the work is :func:`finetunekit.bench.runner.run_bench`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from finetunekit.cli.main import handle_errors
from finetunekit.core.manager import hookimpl


def _names(values) -> list[str]:
    """Repeatable options that also take comma-separated lists."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@click.command()
@click.option("--backbones", multiple=True, metavar="NAMES",
              help="Backbones, comma-separated or repeated (default: vgg16, the seed's); "
                   "throughput also takes vit_ti16 and vit_b16 (KerasHub ViTs, random weights).")
@click.option("--strategies", multiple=True, metavar="NAMES",
              help="Strategies (default: feature_extraction, partial, full for throughput; "
                   "full for --end-to-end; every strategy for --accuracy).")
@click.option("--image-size", type=click.IntRange(min=1), default=None,
              help="Image height and width (default 32).")
@click.option("--batch-size", "batch_sizes", multiple=True, type=click.IntRange(min=1),
              help="Batch size; repeatable (default 8).")
@click.option("--precision", "precisions", multiple=True, metavar="P",
              help="float32, mixed_bfloat16 or mixed_float16; repeatable (default float32).")
@click.option("--steps", type=click.IntRange(min=1), default=4, show_default=True,
              help="Batches per timed repeat (--end-to-end: per epoch).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed repeats; the median is reported.")
@click.option("--accuracy", is_flag=True,
              help="Run the accuracy benchmark (transfer on real data) instead of throughput.")
@click.option("--end-to-end", "end_to_end", is_flag=True,
              help="Time Engine.run epochs (data order, callbacks, lifecycle hooks, "
                   "checkpoints) against plain model.fit of the same model and data.")
@click.option("--sources", multiple=True, metavar="NAMES",
              help="--end-to-end: arrays (in memory) and/or stream (a pipeline); default both.")
@click.option("--epochs", type=click.IntRange(min=1), default=2, show_default=True,
              help="--end-to-end: timed epochs per repeat, each side.")
@click.option("--no-run-folder", "no_run_folder", is_flag=True,
              help="--end-to-end: the engine saves nothing (no checkpoints, no report), "
                   "to time its training loop alone.")
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help="--accuracy: paired seeds per strategy, 0, 1, ... (default 5; --quick 2).")
@click.option("--budgets", default=None, metavar="N,N,...",
              help="--accuracy: labels per class, comma-separated; 'all' = the whole pool "
                   "(default 5,10,50,all; --quick 10).")
@click.option("--rates", default=None, metavar="R,R,...",
              help="--accuracy: the learning-rate grid every strategy is tuned over "
                   "(default 1e-4,1e-3,1e-2; --quick 1e-4,1e-2).")
@click.option("--severity", type=click.IntRange(1, 5), default=None,
              help="--accuracy: severity of the OOD corruptions (default 3).")
@click.option("--cache", type=click.Path(file_okay=False), default=None,
              help="--accuracy: folder of the cached source models "
                   "(default ~/.cache/finetunekit/bench-sources).")
@click.option("--quick", is_flag=True,
              help="--accuracy: vgg16, feature_extraction and full, 10 labels, 2 seeds, 2 rates.")
@click.option("--weights", default=None,
              help='--accuracy: "imagenet" or a weights file instead of the digits source run.')
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="--accuracy: a folder with train/ and validation/ class folders.")
@click.option("--merge", "merge_dirs", multiple=True, type=click.Path(file_okay=False),
              metavar="DIR",
              help="Merge the --out folders of accuracy runs measured in parts (by "
                   "strategies, budgets or backbones) into one result in --out; repeatable.")
@click.option("--out", type=click.Path(file_okay=False), default="bench-results",
              show_default=True, help="Folder for bench.json, bench.md and bench.png.")
@handle_errors
def bench(backbones, strategies, image_size, batch_sizes, precisions, steps, repeats, accuracy,
          end_to_end, sources, epochs, no_run_folder, seeds, budgets, rates, severity,
          cache, quick, weights, data_dir, merge_dirs, out):
    """Benchmark training throughput against the seed's plain Keras code, (--end-to-end)
    Engine.run epochs against plain model.fit, or (--accuracy) accuracy per strategy;
    write bench.json, bench.md and bench.png. One backend per call: set KERAS_BACKEND."""
    from finetunekit.bench.runner import merge_bench, run_bench

    if merge_dirs:
        if accuracy or end_to_end or len(merge_dirs) < 2:
            raise click.UsageError("--merge takes two or more result folders and --out, "
                                   "nothing else: it measures nothing. Received: "
                                   f"{len(merge_dirs)} folder(s)"
                                   + (", --accuracy" if accuracy else "")
                                   + (", --end-to-end" if end_to_end else "") + ".")
        merge_bench([Path(d) for d in merge_dirs], Path(out))
        return
    run_bench(backbones=_names(backbones), strategies=_names(strategies), image_size=image_size,
              batch_sizes=list(batch_sizes), precisions=_names(precisions), steps=steps,
              repeats=repeats, accuracy=accuracy, end_to_end=end_to_end,
              sources=_names(sources), epochs=epochs, run_folder=not no_run_folder,
              seeds=seeds, quick=quick, weights=weights,
              data=data_dir, out=Path(out), command=" ".join(["finetunekit", *sys.argv[1:]]),
              accuracy_options={"budgets": _budgets(budgets), "rates": _rates(rates),
                                "severity": severity, "cache": cache})


def _budgets(text: str | None) -> tuple[int | None, ...] | None:
    """``5,10,all`` -> (5, 10, None)."""
    if text is None:
        return None
    parts = _names([text])
    try:
        values = tuple(None if p == "all" else int(p) for p in parts)
    except ValueError:
        values = ()
    if not values or any(v is not None and v < 2 for v in values):
        raise click.BadParameter(
            f"expected labels per class (integers of 2 or more) or 'all', comma-separated, "
            f"e.g. 5,10,50,all. Received: {text!r}.", param_hint="--budgets")
    return values


def _rates(text: str | None) -> tuple[float, ...] | None:
    """``1e-4,1e-3`` -> (1e-4, 1e-3)."""
    if text is None:
        return None
    try:
        values = tuple(float(p) for p in _names([text]))
    except ValueError:
        values = ()
    if not values or any(not v > 0 for v in values):
        raise click.BadParameter(f"expected positive learning rates, comma-separated, e.g. "
                                 f"1e-4,1e-3,1e-2. Received: {text!r}.", param_hint="--rates")
    return values


@hookimpl
def finetunekit_register_commands(cli):
    """Add ``finetunekit bench``."""
    cli.add_command(bench)
