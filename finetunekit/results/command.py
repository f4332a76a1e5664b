"""``finetunekit evaluate``, ``predict`` and ``compare``: a command plugin
(``finetunekit_register_commands``), like any installed one.

Keras and matplotlib are imported inside the commands, so ``finetunekit --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from finetunekit.cli.main import handle_errors
from finetunekit.core.manager import hookimpl

model_argument = click.argument("model", metavar="RUN_OR_MODEL", type=click.Path(exists=True))
unsafe_option = click.option("--unsafe", is_flag=True,
                             help="Allow loading models that carry Python code.")
tta_option = click.option("--tta", is_flag=True,
                          help="Average with the horizontally flipped images' predictions.")
batch_option = click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True,
                            help="Images per forward pass.")


def _load(model: str, unsafe: bool):
    from finetunekit.core.engine import Engine
    from finetunekit.core.inference import load_for_inference

    engine = Engine()
    return engine, load_for_inference(engine, Path(model), safe_mode=not unsafe)


@click.command()
@model_argument
@click.option("--data", "data_path", required=True, type=click.Path(exists=True),
              help="Folder of class sub-folders, or a CSV image list (path,label).")
@click.option("--out", type=click.Path(), default=None,
              help="Results folder; must not exist (default: a fresh 'evaluation[-N]' "
                   "beside the model).")
@click.option("--strict", is_flag=True, help="Refuse unusable images instead of skipping them.")
@tta_option
@batch_option
@unsafe_option
@handle_errors
def evaluate(model, data_path, out, strict, tta, batch_size, unsafe):
    """Score RUN_OR_MODEL on labelled images: metrics.json, report.md,
    confusion_matrix.png and errors.png."""
    from finetunekit.results.evaluation import check_out, default_out, load_labelled, write_evaluation

    out_path = Path(out) if out else default_out(Path(model))
    check_out(out_path)  # before the work, not after
    engine, loaded = _load(model, unsafe)
    data = load_labelled(engine, loaded, data_path, strict=strict, batch_size=batch_size)
    evaluation = engine.evaluate(loaded, data, batch_size=batch_size, tta=tta)
    write_evaluation(out_path, evaluation, data.train[0], model=str(loaded.file), data=data_path)
    m = evaluation.metrics
    skipped = f", {m['skipped']} file(s) skipped" if m.get("skipped") else ""
    click.echo(f"{m['images']} images{skipped}: accuracy {m['accuracy']:.4f}  loss {m['loss']:.4f}"
               f"  macro F1 {m['macro_avg']['f1']:.4f}; results in {out_path}")


@click.command()
@model_argument
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", type=click.IntRange(1), default=1, show_default=True,
              help="Classes shown per image, likeliest first.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write predictions to a new .csv or .json file (default: print them).")
@tta_option
@batch_option
@unsafe_option
@handle_errors
def predict(model, paths, top_k, out, tta, batch_size, unsafe):
    """Classify image files and folders (PATHS) with RUN_OR_MODEL."""
    from finetunekit.core.errors import PersistenceError
    from finetunekit.results.predict import predict_files, skipped_text, write_predictions

    if out and Path(out).exists():
        raise PersistenceError(f"'{out}' exists already; predict never overwrites it. "
                               "Pass another --out.")
    engine, loaded = _load(model, unsafe)
    result = predict_files(engine, loaded, paths, top_k=top_k, tta=tta, batch_size=batch_size)
    if result.skipped:
        click.echo(skipped_text(result.skipped), err=True)
    if out:
        write_predictions(Path(out), result)
        click.echo(f"{len(result.rows)} prediction(s) in {out}")
        return
    for row in result.rows:
        shown = "  ".join(f"{t['class']} {t['probability']:.3f}" for t in row["top_k"])
        click.echo(f"{row['path']}\t{shown}")


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write compare.md, compare.json and compare.png here (default: print the table).")
@handle_errors
def compare(runs, out):
    """Compare run folders: one table, and their validation curves overlaid."""
    from finetunekit.results.compare import compare_markdown, compare_rows, write_compare

    rows = compare_rows(runs)
    click.echo(compare_markdown(rows), nl=False)
    if out:
        write_compare(Path(out), rows)
        click.echo(f"compare.md, compare.json and compare.png in {out}")


@hookimpl
def finetunekit_register_commands(cli):
    """Add ``evaluate``, ``predict`` and ``compare``."""
    for command in (evaluate, predict, compare):
        cli.add_command(command)
