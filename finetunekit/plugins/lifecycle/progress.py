"""Progress output with rich: a lifecycle-hook plugin with state (one per run).

Not registered by default, so that embedding code stays quiet; the CLI registers it.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from finetunekit.core.manager import hookimpl


def _format_logs(logs: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in logs.items() if isinstance(v, float))


class RichProgress:
    """Show a bar per epoch and a line of metrics after it.

    Args:
        console: rich Console or None. Where to print; stderr by default.
    """

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task = None
        self._steps = None

    @hookimpl
    def finetunekit_stage_start(self, run, stage, index):
        trainable = len(run.trained_layers(index))
        self.console.print(
            f"[bold]stage {index + 1}/{len(run.plan.stages)}[/] {stage.name}: "
            f"{stage.epochs} epoch(s), lr {stage.learning_rate:g}, "
            f"{trainable} trainable base layer(s), BatchNorm "
            f"{'training' if stage.train_bn else 'in inference mode'}"
        )

    @hookimpl
    def finetunekit_batch_end(self, run, stage, batch, logs):
        if self._progress is None:
            self._progress = Progress(TextColumn("  epoch"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=self.console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task("epoch", total=None)
        self._progress.update(self._task, completed=batch + 1)

    @hookimpl
    def finetunekit_epoch_end(self, run, stage, epoch, logs):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.console.print(f"  epoch {epoch:>3}  {_format_logs(logs)}")

    @hookimpl
    def finetunekit_run_end(self, run):
        if run.path is not None:
            self.console.print(f"[green]saved[/] run folder {run.path}")
