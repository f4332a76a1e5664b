"""Checkpoint at epoch ends into ``<save.path>/checkpoints``, keeping the last K.

A lifecycle plugin: ``finetunekit resume RUN_DIR`` continues from the newest checkpoint.
``save.keep_checkpoints = 0`` turns it off. ``save.checkpoint_every = N`` writes one
every N epochs, and always at the run's last epoch or where it stops, so a finished run
is known as finished; a resumed run replays the epochs since the newest checkpoint
(bit-identically: the data order depends on (seed, epoch) only). Where a checkpoint
costs much of an epoch (short epochs on a GPU, a large model), it buys throughput for
the epochs a kill loses. It runs after the other plugins'
``finetunekit_epoch_end`` (``trylast``), so the checkpoint holds the state they left:
a stop they requested, their :class:`~finetunekit.Observer` state.

The model is copied to host memory at the epoch end and written (and older checkpoints
pruned) on a background thread (:attr:`Run.writes <finetunekit.Run>`) while the next
epoch trains: the ``fsync`` of a large checkpoint costs seconds of waiting, not of work.
``Engine.fit`` waits for the write before it returns or raises.
"""

from __future__ import annotations

from finetunekit.core.checkpoint import (checkpoint_path, prune_checkpoints, snapshot,
                                         write_snapshot)
from finetunekit.core.manager import hookimpl


@hookimpl(trylast=True)
def finetunekit_epoch_end(run, stage, epoch, logs):
    keep, every = run.recipe["save"]["keep_checkpoints"], run.recipe["save"]["checkpoint_every"]
    if run.path is None or keep == 0:
        return
    if epoch % every and epoch < run.plan.epochs and run.stopped is None:
        return
    path, folder = checkpoint_path(run.path, epoch), run.path
    taken = snapshot(run.model, epoch=epoch, stage_index=run.stage_index,
                     recipe=run.recipe.to_toml(), history=run.history,
                     steps_per_epoch=run.steps_per_epoch, state=run.checkpoint_state())

    def write() -> None:
        write_snapshot(path, taken)
        prune_checkpoints(folder, keep)

    run.writes.submit(write, what=str(path))
