"""The ``checkpoint`` format: a model with its optimizer, epoch, stage and recipe, to
continue training exactly (see :mod:`finetunekit.core.checkpoint`)."""

from __future__ import annotations

from finetunekit.core.checkpoint import read_checkpoint, restore_model, restore_optimizer, write_checkpoint
from finetunekit.core.components import Format
from finetunekit.core.manager import hookimpl
from finetunekit.core.recipe import Recipe


def save_checkpoint(model, path, run=None) -> None:
    if run is None:
        write_checkpoint(path, model)
        return
    write_checkpoint(path, model, epoch=len(run.history), stage_index=run.stage_index,
                     recipe=run.recipe.to_toml(), history=run.history,
                     steps_per_epoch=run.steps_per_epoch)


def load_checkpoint(path, safe_mode=True, template=None):
    """Rebuild the checkpoint's own recipe's model, compiled for its stage, then restore
    every variable and the optimizer state."""
    checkpoint = read_checkpoint(path)
    own = Recipe.from_string(checkpoint.recipe, source=str(path)) if checkpoint.recipe else None
    model = template(stage=checkpoint.stage_index, steps_per_epoch=checkpoint.steps_per_epoch or 1,
                     own_recipe=own)
    restore_model(model, checkpoint)
    if checkpoint.optimizer:
        restore_optimizer(model, checkpoint)
    return model


@hookimpl
def finetunekit_register_formats(register):
    register(Format(
        name="checkpoint", suffix=".ckpt", save=save_checkpoint, load=load_checkpoint,
        description="Everything to resume: every variable, optimizer state, epoch, stage, recipe.",
    ))
