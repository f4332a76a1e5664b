"""Progress output with rich: a lifecycle-hook plugin with state (one per run).

Not registered by default, so that embedding code stays quiet; the CLI registers it.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from finetunekit.core.manager import hookimpl


def _format_logs(logs: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in logs.items() if isinstance(v, float))


class RichProgress:
    """Show a bar per epoch (steps started of ``run.steps_per_epoch``, elapsed time, ETA,
    then "validating" once the last step is under way) and a line of metrics after it.

    The bar follows ``finetunekit_batch_start``, which carries no metrics: it never makes
    Keras bring a step's logs to the host (no device sync per step); the metrics are
    printed once per epoch. It counts steps dispatched, which on an asynchronous device
    may run a little ahead of steps finished. The bar is redrawn at most every
    `interval` seconds, so the per-step hook stays a comparison of two clocks.

    Args:
        console: rich Console or None. Where to print; stderr by default.
        interval: float. Least seconds between two updates of the bar. Defaults to 0.1.
    """

    def __init__(self, console: Console | None = None, interval: float = 0.1):
        self.console = console or Console(stderr=True)
        self.interval = interval
        self._progress: Progress | None = None
        self._task = None
        self._updated = 0.0

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
    def finetunekit_batch_start(self, run, stage, batch):
        total = run.steps_per_epoch
        if self._progress is None:
            self._progress = Progress(TextColumn("  {task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(),
                                      TextColumn("eta"), TimeRemainingColumn(),
                                      console=self.console, transient=True,
                                      refresh_per_second=4)
            self._progress.start()
            self._task = self._progress.add_task(
                f"epoch {run.epoch}/{run.plan.epochs}", total=total)
        now = time.monotonic()
        last = total is not None and batch + 1 >= total
        if last or now - self._updated >= self.interval:
            self._updated = now
            self._progress.update(self._task, completed=batch + 1)
        if last:
            self._progress.update(self._task, description=f"epoch {run.epoch}: validating")

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
