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
                   "every strategy for --accuracy).")
@click.option("--image-size", type=click.IntRange(min=1), default=None,
              help="Image height and width (default 32).")
@click.option("--batch-size", "batch_sizes", multiple=True, type=click.IntRange(min=1),
              help="Batch size; repeatable (default 8).")
@click.option("--precision", "precisions", multiple=True, metavar="P",
              help="float32, mixed_bfloat16 or mixed_float16; repeatable (default float32).")
@click.option("--steps", type=click.IntRange(min=1), default=4, show_default=True,
              help="Batches per timed repeat.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed repeats; the median is reported.")
@click.option("--accuracy", is_flag=True,
              help="Run the accuracy benchmark (transfer on real data) instead of throughput.")
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
          seeds, quick, weights, data_dir, out):
    """Benchmark training throughput against the seed's plain Keras code, or (--accuracy)
    accuracy per strategy; write bench.json, bench.md and bench.png."""
    from finetunekit.bench.runner import run_bench

    run_bench(backbones=_names(backbones), strategies=_names(strategies), image_size=image_size,
              batch_sizes=list(batch_sizes), precisions=_names(precisions), steps=steps,
              repeats=repeats, accuracy=accuracy, seeds=seeds, quick=quick, weights=weights,
              data=data_dir, out=Path(out), command=" ".join(["finetunekit", *sys.argv[1:]]))


@hookimpl
def finetunekit_register_commands(cli):
    """Add ``finetunekit bench``."""
    cli.add_command(bench)
