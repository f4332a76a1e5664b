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
              help="Backbones, comma-separated or repeated (default: vgg16, the seed's).")
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
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="--accuracy: seeds per strategy (0, 1, ...).")
@click.option("--quick", is_flag=True, help="--accuracy: fewer images and epochs (a smoke test).")
@click.option("--weights", default=None,
              help='--accuracy: "imagenet" or a weights file instead of the digits source run.')
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="--accuracy: a folder with train/ and validation/ class folders.")
@click.option("--out", type=click.Path(file_okay=False), default="bench-results",
              show_default=True, help="Folder for bench.json, bench.md and bench.png.")
@handle_errors
def bench(backbones, strategies, image_size, batch_sizes, precisions, steps, repeats, accuracy,
          end_to_end, sources, epochs, no_run_folder, seeds, quick, weights, data_dir, out):
    """Benchmark training throughput against the seed's plain Keras code, (--end-to-end)
    Engine.run epochs against plain model.fit, or (--accuracy) accuracy per strategy;
    write bench.json, bench.md and bench.png. One backend per call: set KERAS_BACKEND."""
    from finetunekit.bench.runner import run_bench

    run_bench(backbones=_names(backbones), strategies=_names(strategies), image_size=image_size,
              batch_sizes=list(batch_sizes), precisions=_names(precisions), steps=steps,
              repeats=repeats, accuracy=accuracy, end_to_end=end_to_end,
              sources=_names(sources), epochs=epochs, run_folder=not no_run_folder,
              seeds=seeds, quick=quick, weights=weights,
              data=data_dir, out=Path(out), command=" ".join(["finetunekit", *sys.argv[1:]]))


@hookimpl
def finetunekit_register_commands(cli):
    """Add ``finetunekit bench``."""
    cli.add_command(bench)
