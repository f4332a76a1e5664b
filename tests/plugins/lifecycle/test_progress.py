"""The CLI's progress plugin: a bar that knows its total, and quiet by default."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from finetunekit import Engine
from finetunekit.plugins.lifecycle.progress import RichProgress


def test_the_bar_knows_its_total_and_shows_the_validation_phase():
    progress = RichProgress(Console(file=io.StringIO(), width=100), interval=3600.0)
    run = SimpleNamespace(steps_per_epoch=3, epoch=2, plan=SimpleNamespace(epochs=4))
    progress.finetunekit_batch_start(run=run, stage=None, batch=0)
    task = progress._progress.tasks[0]
    assert task.total == 3 and task.description == "epoch 2/4"
    progress.finetunekit_batch_start(run=run, stage=None, batch=1)
    assert task.completed == 1  # within the interval: not redrawn
    progress.finetunekit_batch_start(run=run, stage=None, batch=2)
    assert task.completed == 3 and task.description == "epoch 2: validating"
    progress.finetunekit_epoch_end(run=run, stage=None, epoch=2, logs={"loss": 0.5})
    assert "epoch   2  loss 0.5000" in progress.console.file.getvalue()


def test_an_engine_is_quiet_unless_verbose():
    from finetunekit.core.callbacks import RunCallbacks
    from finetunekit.core.training import EpochLines, Lifecycle

    quiet = Engine(entry_points=False)
    assert not quiet.pm.hook.finetunekit_batch_end.get_hookimpls()  # no per-step hook
    lifecycle = Lifecycle(quiet, None, None, RunCallbacks([], {}))
    assert lifecycle.on_train_batch_end._is_default  # Keras may dispatch batch ends async
    loud = Engine(entry_points=False, verbose=1)
    assert any(isinstance(p, EpochLines) for p in loud.pm.get_plugins())
    assert not loud.pm.hook.finetunekit_batch_end.get_hookimpls()  # still no per-step hook


def test_verbose_prints_a_line_per_stage_and_epoch():
    import io

    from finetunekit.core.training import EpochLines
    from finetunekit.testing import tiny_data, tiny_recipe

    stream = io.StringIO()
    Engine([EpochLines(stream)], entry_points=False).run(
        tiny_recipe(strategy="two_stage", epochs=2), data=tiny_data(), save=False)
    lines = stream.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("stage")] == [
        "stage 1/2 linear_probe", "stage 2/2 fine_tune"]
    assert [line.split()[1] for line in lines if line.startswith("epoch")] == ["1/2", "2/2"]
