"""Checkpoint at every epoch end into ``<save.path>/checkpoints``, keeping the last K.

A lifecycle plugin: ``finetunekit resume RUN_DIR`` continues from the newest checkpoint.
``save.keep_checkpoints = 0`` turns it off. It runs after the other plugins'
``finetunekit_epoch_end`` (``trylast``), so the checkpoint holds the state they left:
a stop they requested, their :class:`~finetunekit.Observer` state.
"""

from __future__ import annotations

from finetunekit.core.checkpoint import checkpoint_path, prune_checkpoints, write_checkpoint
from finetunekit.core.manager import hookimpl


@hookimpl(trylast=True)
def finetunekit_epoch_end(run, stage, epoch, logs):
    keep = run.recipe["save"]["keep_checkpoints"]
    if run.path is None or keep == 0:
        return
    write_checkpoint(checkpoint_path(run.path, epoch), run.model, epoch=epoch,
                     stage_index=run.stage_index, recipe=run.recipe.to_toml(),
                     history=run.history, steps_per_epoch=run.steps_per_epoch,
                     state=run.checkpoint_state())
    prune_checkpoints(run.path, keep)
