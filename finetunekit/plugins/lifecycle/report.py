"""``curves.png``, ``report.md`` and ``report.json`` in the run folder, rewritten at
every epoch end (the plot: see :data:`PLOT_BUDGET`) and once more when the run ends.

A lifecycle plugin. ``curves.png``: loss and the head's metrics per epoch, training and
validation, stage boundaries marked and named, the learning rate on a second axis.
``report.md``: the recipe in brief, the plan, the latest metrics, wall time and
images/s. ``report.json``: the same numbers for ``finetunekit compare``. Every file is
written atomically; a run without a folder (``save.path`` unset) writes nothing.

A module plugin holds no state of its own (two engines in one process share the
module), so the timing of a run rides on the run itself (``run.report_clock``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from finetunekit.core.manager import hookimpl
from finetunekit.core.run_folder import atomic_write

REPORT_FILES = ("curves.png", "report.md", "report.json")
"""What this plugin writes into a run folder."""

PLOT_BUDGET = 50
"""``curves.png`` is redrawn at an epoch end only if the last drawing is at least this
many times its own drawing time ago (drawing takes 0.1-0.5 s): at most about 2% of the
training time, so tiny epochs skip some redraws; the run's end always redraws."""

FIRST_DRAW_ESTIMATE = 0.3
"""Seconds a drawing is assumed to take before the first one is timed: the first epoch
draws only if it took at least ``PLOT_BUDGET`` times as long."""


@dataclass
class ReportClock:
    """Timing of one run, kept on ``run.report_clock``."""

    started: float = field(default_factory=time.perf_counter)
    last: float = field(default_factory=time.perf_counter)
    training_seconds: float = 0.0
    epochs_timed: int = 0
    writing_seconds: float = 0.0
    drawn_at: float = field(default_factory=time.perf_counter)
    draw_seconds: float = FIRST_DRAW_ESTIMATE
    stages: list[dict[str, Any]] = field(default_factory=list)
    trainable_params: list[int] = field(default_factory=list)


@hookimpl
def finetunekit_run_start(run):
    if run.path is None:
        return
    run.report_clock = ReportClock(stages=[
        {"name": s.name, "epochs": s.epochs, "learning_rate": s.learning_rate,
         "batchnorm": "train" if s.train_bn else "inference"} for s in run.plan.stages])


@hookimpl
def finetunekit_stage_start(run, stage, index):
    clock = getattr(run, "report_clock", None)
    if clock is None:
        return
    params = sum(int(np.prod(w.shape)) for w in run.model.trainable_weights)
    clock.stages[index]["trainable_params"] = params
    clock.last = time.perf_counter()


@hookimpl
def finetunekit_epoch_end(run, stage, epoch, logs):
    clock = getattr(run, "report_clock", None)
    if clock is None:
        return
    now = time.perf_counter()
    clock.training_seconds += now - clock.last
    clock.epochs_timed += 1
    write_report(run, finished=False)
    clock.last = time.perf_counter()
    clock.writing_seconds += clock.last - now


@hookimpl
def finetunekit_run_end(run):
    if getattr(run, "report_clock", None) is not None and run.path is not None:
        write_report(run, finished=True)


def summary(run, *, finished: bool) -> dict[str, Any]:
    """The numbers of ``report.json``."""
    clock: ReportClock = run.report_clock
    recipe = run.recipe
    batch = recipe["data"]["batch_size"]
    images = (run.steps_per_epoch or 0) * batch * clock.epochs_timed
    history = run.history
    validation = [row for row in history if "val_loss" in row]
    best = min(validation, key=lambda row: row["val_loss"]) if validation else None
    return {
        "finished": finished,
        "backbone": recipe["backbone"]["name"],
        "input_shape": list(recipe["backbone"]["input_shape"]),
        "weights": str(recipe["backbone"]["weights"]),
        "strategy": recipe["strategy"]["name"],
        "optimizer": recipe["optimizer"]["name"],
        "learning_rate": recipe["optimizer"]["learning_rate"],
        "batch_size": batch,
        "classes": run.class_names,
        "plan": clock.stages,
        "trainable_params": max([s.get("trainable_params", 0) for s in clock.stages] or [0]),
        "epochs": len(history),
        "planned_epochs": run.plan.epochs,
        "wall_seconds": round(time.perf_counter() - clock.started, 2),
        "training_seconds": round(clock.training_seconds, 2),
        "report_seconds": round(clock.writing_seconds, 3),
        "images_per_second": round(images / clock.training_seconds, 1) if clock.training_seconds else None,
        "final": history[-1] if history else {},
        "best": best,
        "history": history,
    }


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def report_markdown(info: dict[str, Any]) -> str:
    """``report.md``: the recipe, the plan, the final (and best) metrics, the speed."""
    state = "finished" if info["finished"] else f"running, epoch {info['epochs']} of {info['planned_epochs']}"
    lines = [
        f"# Run report ({state})", "",
        "![training curves](curves.png)", "",
        "## Recipe", "",
        f"- backbone: {info['backbone']} {tuple(info['input_shape'])}, weights {info['weights']}",
        f"- strategy: {info['strategy']}",
        f"- optimizer: {info['optimizer']}, learning rate {info['learning_rate']:g}, "
        f"batch size {info['batch_size']}",
        f"- classes: {', '.join(info['classes'] or []) or 'unknown'}", "",
        "## Plan", "",
        "| stage | epochs | learning rate | BatchNorm | trainable params |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    for stage in info["plan"]:
        params = stage.get("trainable_params")
        lines.append(f"| {stage['name']} | {stage['epochs']} | {stage['learning_rate']:g} | "
                     f"{stage['batchnorm']} | {'-' if params is None else f'{params:,}'} |")
    lines += ["", "## Metrics", ""]
    final = {k: v for k, v in info["final"].items() if k not in ("epoch", "stage")}
    best = info["best"] or {}
    lines += ["| metric | final (epoch {}) | best val_loss epoch ({}) |".format(
                  info["final"].get("epoch", "-"), best.get("epoch", "-")),
              "| --- | ---: | ---: |"]
    for key, value in final.items():
        lines.append(f"| {key} | {_number(value)} | {_number(best.get(key, '-'))} |")
    speed = info["images_per_second"]
    lines += ["", "## Time", "",
              f"- wall time: {info['wall_seconds']:.1f} s ({info['training_seconds']:.1f} s "
              f"training, {info['report_seconds']:.2f} s writing this report and its plot)",
              f"- training speed: {'-' if speed is None else f'{speed:,.1f}'} images/s "
              "(batches x batch size per second of training epochs, validation included)", ""]
    return "\n".join(lines)


def write_report(run, *, finished: bool) -> None:
    """Write ``curves.png``, ``report.md`` and ``report.json`` into the run folder."""
    from finetunekit.results.plots import curves_figure, save_png  # matplotlib: only when used

    clock: ReportClock = run.report_clock
    info = summary(run, finished=finished)
    atomic_write(run.path / "report.json", json.dumps(info, indent=2, default=str))
    atomic_write(run.path / "report.md", report_markdown(info))
    now = time.perf_counter()
    if not finished and now - clock.drawn_at < PLOT_BUDGET * clock.draw_seconds:
        return  # epochs shorter than the plot: redraw less often, and at the end
    title = f"{info['backbone']}, strategy {info['strategy']}: {run.path.name}"
    save_png(curves_figure(run.history, title), run.path / "curves.png")
    clock.drawn_at = time.perf_counter()
    clock.draw_seconds = clock.drawn_at - now
