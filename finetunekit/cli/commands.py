"""The engine's commands, ``run``, ``resume``, ``retrain``, ``describe`` and ``list``: an
ordinary command plugin (``finetunekit_register_commands``), like any installed one.

Keras is imported inside the commands, never here, so ``finetunekit --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from finetunekit.cli.main import handle_errors
from finetunekit.core.errors import RecipeError
from finetunekit.core.manager import hookimpl


def _engine(plugins, *, progress: bool = False):
    from finetunekit.cli.main import quiet_backend_import

    quiet_backend_import()
    from finetunekit.core.engine import Engine

    return Engine(plugins=list(plugins), verbose=int(progress))


def _recipe(path: str, overrides, overwrite: bool = False):
    from finetunekit.core.recipe import Recipe

    recipe = Recipe.from_toml(path)
    if overrides:
        recipe = recipe.with_overrides(list(overrides))
    if overwrite:
        recipe = recipe.with_overrides({"save.overwrite": True})
    return recipe


def check_strict(engine, source: str) -> None:
    """Refuse ``--strict`` for a data source that declares no ``strict`` key.

    ``--strict`` sets ``data.strict = true``; only sources that scan image files (and so
    can meet an unusable one) declare that key.

    Raises:
        RecipeError: the source has no ``strict`` key; the message names those that do.
    """
    sources = {row["name"]: row["params"] for row in engine.components() if row["kind"] == "data"}
    if source not in sources or "strict" in sources[source]:
        return  # an unknown source is refused by the run itself, with the known names
    able = sorted(name for name, params in sources.items() if "strict" in params)
    raise RecipeError(
        f"--strict: data source '{source}' has no 'strict' key; --strict sets data.strict = "
        f"true, which only sources that scan image files declare ({', '.join(able)}). "
        f"Received: data.source = '{source}'. Use one of those sources, or drop --strict."
    )


def _summary(run) -> str:
    last = run.history[-1] if run.history else {}
    return "  ".join(f"{k} {v:.4f}" for k, v in last.items() if isinstance(v, float))


def _done(run, suffix: str = "") -> str:
    """What a training command prints last: epochs, last metrics, and an early stop."""
    line = f"done: {len(run.history)} epoch(s)  {_summary(run)}{suffix}"
    if run.stopped:
        line += f"\nstopped at epoch {run.stopped['epoch']}: {run.stopped['reason']}"
    return line


recipe_argument = click.argument("recipe", type=click.Path(dir_okay=False))
set_option = click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                          help="Override a recipe key (TOML value); repeatable.")
strict_option = click.option("--strict", is_flag=True,
                             help="Refuse unusable images instead of skipping them "
                                  "(same as --set data.strict=true; for sources that scan "
                                  "files, such as folder and csv).")
plugin_option = click.option("--plugin", "plugins", multiple=True, metavar="MODULE",
                             help="Import MODULE and register it as a plugin; repeatable.")


@click.command()
@recipe_argument
@set_option
@plugin_option
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder.")
@strict_option
@handle_errors
def run(recipe, overrides, plugins, overwrite, strict):
    """Train the model RECIPE describes and write its run folder (save.path)."""
    recipe_obj = _recipe(recipe, overrides, overwrite)
    engine = _engine(plugins, progress=True)
    if strict:
        check_strict(engine, recipe_obj["data"]["source"])
        recipe_obj = recipe_obj.with_overrides({"data.strict": True})
    result = engine.run(recipe_obj)
    click.echo(_done(result))


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@plugin_option
@handle_errors
def resume(run_dir, plugins):
    """Continue an interrupted run from the newest checkpoint in RUN_DIR."""
    result = _engine(plugins, progress=True).resume(Path(run_dir))
    click.echo(_done(result))


@click.command()
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
    engine = _engine(plugins, progress=True)
    if strict:
        check_strict(engine, changes["data.source"])
        changes["data.strict"] = True
    recipe = Recipe.from_toml(recipe_path) if recipe_path else None
    assignments = dict(parse_assignment(text) for text in overrides)
    result = engine.retrain(
        model_path, recipe=recipe, overrides={**assignments, **changes}, safe_mode=not unsafe)
    click.echo(_done(result, f"; saved {result.path}"))


@click.command()
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
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    table = Table(title=f"{info['backbone']} {tuple(info['input_shape'])}, strategy {info['strategy']}")
    for column in ("layer", "part", "trainable", "params"):
        table.add_column(column, justify="right" if column == "params" else "left")
    for row in info["layers"]:
        table.add_row(escape(row["name"]), row["part"], "yes" if row["trainable"] else "",
                      f"{row['params']:,}")
    console.print(table)
    console.print(f"total params {info['total_params']:,}  trainable {info['trainable_params']:,}  "
                  f"non-trainable {info['non_trainable_params']:,}")
    for i, stage in enumerate(info["plan"], 1):
        console.print(f"stage {i}: {stage['name']}, {stage['epochs']} epoch(s), lr "
                      f"{stage['learning_rate']:g}, {len(stage['trained_layers'])} trainable base "
                      f"layer(s), {stage['trainable_params']:,} trainable params, BatchNorm "
                      f"{stage['batchnorm']}")


@click.command("list")
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
    from rich.markup import escape
    from rich.table import Table

    table = Table()
    for column in ("kind", "name", "plugin", "description"):
        table.add_column(column)
    for row in rows:
        # descriptions hold brackets ("finetunekit[keras-cv]") that rich would read as markup
        table.add_row(*(escape(str(row[key])) for key in ("kind", "name", "plugin", "description")))
    Console().print(table)


@hookimpl
def finetunekit_register_commands(cli):
    """Add the engine's commands."""
    for command in (run, resume, retrain, describe, list_components):
        cli.add_command(command)
