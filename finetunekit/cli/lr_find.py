"""``finetunekit lr-find``: the learning-rate finder on the command line, a command plugin.

Writes ``lr_find.json`` (the suggestion and the curve) and ``lr_find.png`` (loss against
rate, log x-axis, the suggestion marked) into ``--out``. The plot uses matplotlib's
object API (a ``Figure`` and its Agg canvas), so it touches no pyplot state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from finetunekit.cli.commands import _engine, _recipe, plugin_option, recipe_argument, set_option
from finetunekit.cli.main import handle_errors
from finetunekit.core.manager import hookimpl


def plot_lr_finding(finding: Any, path: Path, *, title: str = "") -> Path:
    """Draw `finding` (an :class:`~finetunekit.core.lr_find.LRFinding`) to a PNG.

    The raw batch losses are faint dots, the smoothed loss a line, the suggestion a
    vertical dashed line with its value in the legend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(finding.learning_rates, finding.losses, ".", color="0.7", markersize=4,
              label="batch loss")
    axes.plot(finding.learning_rates, finding.smoothed, "-", color="C0", linewidth=2,
              label="smoothed loss")
    if finding.suggested_learning_rate is not None:
        axes.axvline(finding.suggested_learning_rate, color="C3", linestyle="--",
                     label=f"suggested {finding.suggested_learning_rate:.2e}")
    axes.set_xscale("log")
    axes.set_xlabel("learning rate (log scale)")
    axes.set_ylabel("training loss")
    finite = [s for s in finding.smoothed if s == s and abs(s) != float("inf")]
    if finite:  # keep the divergence from squashing the useful part of the curve
        low = min(finite)
        high = max(min(max(finite), 1.3 * max(finite[0], low)), low + 1e-12)
        axes.set_ylim(low - 0.05 * (high - low + 1e-12), high + 0.1 * (high - low + 1e-12))
    axes.set_title(title or f"Learning-rate finder, stage '{finding.stage}'")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    return path


@click.command("lr-find")
@recipe_argument
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for lr_find.json and lr_find.png.")
@click.option("--start", type=float, default=1e-7, show_default=True, help="First rate.")
@click.option("--end", type=float, default=10.0, show_default=True, help="Last rate.")
@click.option("--steps", type=int, default=100, show_default=True, help="Batches swept.")
@set_option
@plugin_option
@handle_errors
def lr_find(recipe, out, start, end, steps, overrides, plugins):
    """Sweep the learning rate on RECIPE's first stage and suggest one (writes --out)."""
    recipe_obj = _recipe(recipe, overrides)
    finding = _engine(plugins).lr_find(recipe_obj, start=start, end=end, steps=steps)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lr_find.json").write_text(json.dumps(finding.to_dict(), indent=2))
    title = (f"{recipe_obj['backbone']['name']}, {recipe_obj['strategy']['name']}: "
             f"stage '{finding.stage}'")
    plot_lr_finding(finding, folder / "lr_find.png", title=title)
    suggestion = finding.suggested_learning_rate
    click.echo(f"suggested learning rate: {suggestion:.3g}" if suggestion is not None
               else "no suggestion: too few steps")
    click.echo(f"wrote {folder / 'lr_find.json'} and {folder / 'lr_find.png'}")


@hookimpl
def finetunekit_register_commands(cli):
    """Add ``lr-find``."""
    cli.add_command(lr_find)
