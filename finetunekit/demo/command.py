"""``finetunekit demo``: a command plugin (``finetunekit_register_commands``)."""

from __future__ import annotations

from pathlib import Path

import click

from finetunekit.cli.main import handle_errors
from finetunekit.core.manager import hookimpl


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for the demo's results; must not hold a demo (default: a "
                   "fresh demo-results/<date>-<time>).")
@click.option("--quick", is_flag=True, help="Fewer epochs and images; for a smoke test.")
@handle_errors
def demo(out, quick):
    """Fine-tune on the embedded digits data with several strategies; print a table."""
    from finetunekit.demo.runner import run_demo

    run_demo(Path(out) if out else None, quick=quick)


@hookimpl
def finetunekit_register_commands(cli):
    """Add ``finetunekit demo``."""
    cli.add_command(demo)
