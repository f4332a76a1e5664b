"""The ``finetunekit`` command line.

Bad input of any kind ends with a message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click

# Quiet TensorFlow's C++ start-up logging before Keras is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(2)


def handle_errors(fn):
    """Turn finetunekit's own errors (and a missing file) into exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from finetunekit.core.errors import FinetunekitError

        try:
            return fn(*args, **kwargs)
        except FinetunekitError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)

    return wrapper


def _engine(plugins, *, progress: bool = False):
    from finetunekit.core.engine import Engine

    extra = list(plugins)
    if progress:
        from finetunekit.plugins.lifecycle.progress import RichProgress

        extra.append(RichProgress())
    return Engine(plugins=extra)


def _recipe(path: str, overrides, overwrite: bool = False, strict: bool = False):
    from finetunekit.core.recipe import Recipe

    recipe = Recipe.from_toml(path)
    if overrides:
        recipe = recipe.with_overrides(list(overrides))
    if overwrite:
        recipe = recipe.with_overrides({"save.overwrite": True})
    if strict:
        recipe = recipe.with_overrides({"data.strict": True})
    return recipe


recipe_argument = click.argument("recipe", type=click.Path(dir_okay=False))
set_option = click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                          help="Override a recipe key (TOML value); repeatable.")
strict_option = click.option("--strict", is_flag=True,
                             help="Refuse unusable images instead of skipping them "
                                  "(same as --set data.strict=true).")
plugin_option = click.option("--plugin", "plugins", multiple=True, metavar="MODULE",
                             help="Import MODULE and register it as a plugin; repeatable.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="finetunekit")
def main():
    """Fine-tune pretrained image CNNs; every part of the recipe is a plugin."""


@main.command()
@recipe_argument
@set_option
@plugin_option
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder.")
@strict_option
@handle_errors
def run(recipe, overrides, plugins, overwrite, strict):
    """Train the model RECIPE describes and write its run folder (save.path)."""
    recipe_obj = _recipe(recipe, overrides, overwrite, strict)
    engine = _engine(plugins, progress=True)
    result = engine.run(recipe_obj)
    click.echo(f"done: {len(result.history)} epoch(s)  {_summary(result)}")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@plugin_option
@handle_errors
def resume(run_dir, plugins):
    """Continue an interrupted run from the newest checkpoint in RUN_DIR."""
    result = _engine(plugins, progress=True).resume(Path(run_dir))
    click.echo(f"done: {len(result.history)} epoch(s)  {_summary(result)}")


@main.command()
@click.argument("model", type=click.Path())
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False),
              help="Folder of class sub-folders with the new training images.")
@click.option("--validation", "validation_dir", type=click.Path(file_okay=False),
              help="Folder of class sub-folders for validation.")
@click.option("--recipe", "recipe_path", type=click.Path(dir_okay=False),
              help="The recipe the model was trained with (default: recipe.toml beside it).")
@click.option("--strategy", help="Switch strategy (e.g. full); its keys via --set strategy.KEY=...")
@click.option("--epochs", type=int, help="Epochs to train.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Run folder for the retrained model (default: <model folder>-retrained).")
@set_option
@plugin_option
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option("--unsafe", is_flag=True, help="Allow loading models that carry Python code.")
@strict_option
@handle_errors
def retrain(model, data_dir, validation_dir, recipe_path, strategy, epochs, out, overrides,
            plugins, overwrite, unsafe, strict):
    """Load a saved MODEL (a run folder or a model file) and train it on new data."""
    from finetunekit.core.recipe import Recipe, parse_assignment

    model_path = Path(model)
    folder = model_path if model_path.is_dir() else model_path.parent
    changes = {"data.source": "folder", "data.train": data_dir,
               "save.path": out or f"{folder.resolve()}-retrained", "save.overwrite": overwrite}
    if validation_dir:
        changes["data.validation"] = validation_dir
    if strategy:
        changes["strategy.name"] = strategy
    if epochs is not None:
        changes["train.epochs"] = epochs
    if strict:
        changes["data.strict"] = True
    recipe = Recipe.from_toml(recipe_path) if recipe_path else None
    assignments = dict(parse_assignment(text) for text in overrides)
    result = _engine(plugins, progress=True).retrain(
        model_path, recipe=recipe, overrides={**assignments, **changes}, safe_mode=not unsafe)
    click.echo(f"done: {len(result.history)} epoch(s)  {_summary(result)}; saved {result.path}")


def _summary(run) -> str:
    last = run.history[-1] if run.history else {}
    return "  ".join(f"{k} {v:.4f}" for k, v in last.items() if isinstance(v, float))


@main.command()
@recipe_argument
@set_option
@plugin_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def describe(recipe, overrides, plugins, as_json):
    """Build the model without training: layers, parameter counts and the plan."""
    info = _engine(plugins).describe(_recipe(recipe, overrides))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{info['backbone']} {tuple(info['input_shape'])}, strategy {info['strategy']}")
    for column in ("layer", "part", "trainable", "params"):
        table.add_column(column, justify="right" if column == "params" else "left")
    for row in info["layers"]:
        table.add_row(row["name"], row["part"], "yes" if row["trainable"] else "",
                      f"{row['params']:,}")
    console.print(table)
    console.print(f"total params {info['total_params']:,}  trainable {info['trainable_params']:,}  "
                  f"non-trainable {info['non_trainable_params']:,}")
    for i, stage in enumerate(info["plan"], 1):
        console.print(f"stage {i}: {stage['name']}, {stage['epochs']} epoch(s), lr "
                      f"{stage['learning_rate']:g}, {len(stage['trainable_layers'])} trainable base "
                      f"layer(s), {stage['trainable_params']:,} trainable params, BatchNorm "
                      f"{stage['batchnorm']}")


@main.command("list")
@plugin_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def list_components(plugins, as_json):
    """Every component (backbone, strategy, ...) and the plugin it comes from."""
    rows = _engine(plugins).components()
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in ("kind", "name", "plugin", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["kind"], row["name"], row["plugin"], row["description"])
    Console().print(table)


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Keep the demo's run folders here (default: a temporary folder).")
@click.option("--quick", is_flag=True, help="Fewer epochs and images; for a smoke test.")
@handle_errors
def demo(out, quick):
    """Fine-tune on the embedded digits data with several strategies; print a table."""
    from finetunekit.demo import run_demo

    run_demo(Path(out) if out else None, quick=quick)


def _names(values) -> list[str]:
    """Repeatable options that also take comma-separated lists."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@main.command()
@click.option("--backbones", multiple=True, metavar="NAMES",
              help="Backbones, comma-separated or repeated (default: vgg16, the seed's).")
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
    from finetunekit.bench.cli import run_bench

    run_bench(backbones=_names(backbones), strategies=_names(strategies), image_size=image_size,
              batch_sizes=list(batch_sizes), precisions=_names(precisions), steps=steps,
              repeats=repeats, accuracy=accuracy, seeds=seeds, quick=quick, weights=weights,
              data=data_dir, out=Path(out), command=" ".join(["finetunekit", *sys.argv[1:]]))
