"""Learning-rate schedules of a stage, and optimizers given from Python.

``[optimizer] schedule`` picks one of Keras's own schedules
(``keras.optimizers.schedules``), built afresh for every stage over that stage's steps
(each stage compiles a fresh optimizer whose step count starts at 0):

============  =========================================================================
schedule      the rate during a stage of ``E`` epochs of ``S`` steps (peak ``lr``)
============  =========================================================================
constant      ``lr``
step          ``lr * step_factor ** (epoch // step_every_epochs)`` (ExponentialDecay,
              staircase)
exponential   ``lr * decay_rate ** (step / S)``: ``decay_rate`` per epoch, smooth
cosine        linear warmup from 0 over ``warmup_steps`` (or ``warmup_epochs * S``),
              then cosine decay to ``min_learning_rate`` (CosineDecay)
one_cycle     linear warmup from ``lr / div_factor`` over ``pct_start`` of the stage,
              then cosine decay to ``lr / (div_factor * final_div_factor)``
              (CosineDecay; fastai's warmup is a cosine, this one is linear)
plateau       ``lr``, multiplied by ``plateau_factor`` when ``plateau_monitor`` has not
              improved for ``plateau_patience`` epochs, down to ``min_learning_rate``
              (Keras's ReduceLROnPlateau, as a callback of the stage)
============  =========================================================================

Every schedule key is a core key of ``[optimizer]``; one that belongs to another schedule
is refused (:func:`finetunekit.core.recipe.check_schedule_keys`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras

from finetunekit.core.errors import DataError, RecipeError
from finetunekit.core.recipe import SCHEDULE_KEYS
from finetunekit.core.run_folder import atomic_write

PYTHON_OPTIMIZER = "custom"
"""``optimizer.name`` recorded for a run whose optimizer was given from Python
(``Engine.run(recipe, optimizer=...)``); its class and config go to ``optimizer.json``."""


def settings(section: Mapping[str, Any]) -> dict[str, Any]:
    """The schedule's keys with their defaults filled in."""
    own = SCHEDULE_KEYS[section["schedule"]]
    return {key: default if section.get(key) is None else section[key]
            for key, default in own.items()}


def stage_learning_rate(section: Mapping[str, Any], peak: float, epochs: int,
                        steps_per_epoch: int | None) -> Any:
    """The learning rate a stage's optimizer gets: `peak` (a float) or a Keras schedule.

    Args:
        section: the recipe's ``[optimizer]`` section.
        peak: float. The stage's learning rate.
        epochs: int. The stage's epochs.
        steps_per_epoch: int or None. Batches per epoch; every schedule but constant and
            plateau needs it.
    """
    schedule = section["schedule"]
    if schedule in ("constant", "plateau"):
        return peak
    if steps_per_epoch is None:
        raise DataError(
            f"optimizer.schedule = \"{schedule}\" needs the number of steps per epoch, but the "
            "training data does not say how many batches it has. Use arrays, a finite "
            "dataset, or schedule = \"constant\".")
    keys, schedules = settings(section), keras.optimizers.schedules
    total = max(1, steps_per_epoch * epochs)
    if schedule == "step":
        return schedules.ExponentialDecay(
            peak, decay_steps=steps_per_epoch * keys["step_every_epochs"],
            decay_rate=keys["step_factor"], staircase=True)
    if schedule == "exponential":
        return schedules.ExponentialDecay(peak, decay_steps=steps_per_epoch,
                                          decay_rate=keys["decay_rate"])
    if schedule == "cosine":
        warmup = keys["warmup_steps"]
        if warmup is None and keys["warmup_epochs"] is not None:
            warmup = round(keys["warmup_epochs"] * steps_per_epoch)
        alpha = min(1.0, keys["min_learning_rate"] / peak) if peak > 0 else 0.0
        if not warmup:
            return schedules.CosineDecay(peak, decay_steps=total, alpha=alpha)
        return schedules.CosineDecay(0.0, decay_steps=max(1, total - warmup), alpha=alpha,
                                     warmup_target=peak, warmup_steps=warmup)
    # one_cycle
    warmup = round(keys["pct_start"] * total)
    return schedules.CosineDecay(
        peak / keys["div_factor"], decay_steps=max(1, total - warmup),
        alpha=1.0 / (keys["div_factor"] * keys["final_div_factor"]),
        warmup_target=peak, warmup_steps=warmup)


class PlateauSchedule(keras.callbacks.ReduceLROnPlateau):
    """Keras's ReduceLROnPlateau across the one-epoch ``fit`` calls of a stage.

    The engine fits one epoch per ``fit`` call (so that a run resumes at any epoch);
    Keras's callback forgets its patience at every ``on_train_begin``, this one keeps it
    for the whole stage.
    """

    def on_train_begin(self, logs=None):
        pass


def stage_callbacks(section: Mapping[str, Any]) -> list[Any]:
    """Keras callbacks the stage's fit needs for its schedule (plateau's), else none."""
    if section["schedule"] != "plateau":
        return []
    keys = settings(section)
    return [PlateauSchedule(monitor=keys["plateau_monitor"], factor=keys["plateau_factor"],
                            patience=keys["plateau_patience"], min_lr=keys["min_learning_rate"],
                            verbose=0)]


# -- optimizers given from Python -----------------------------------------------------------


def check_python_optimizer(optimizer: Any, section: Mapping[str, Any]) -> None:
    """Refuse what ``Engine.run(optimizer=...)`` cannot use.

    Raises:
        RecipeError: not a Keras optimizer or a callable; or an optimizer whose own rate is
            a schedule while the recipe names another schedule too.
    """
    if isinstance(optimizer, keras.optimizers.Optimizer):
        own = optimizer.get_config().get("learning_rate")
        if isinstance(own, Mapping) and section["schedule"] != "constant":
            raise RecipeError(
                "The optimizer given from Python has a learning-rate schedule of its own, and "
                f"the recipe names optimizer.schedule = {section['schedule']!r} too. Keep one: "
                "give the optimizer a float rate, or set schedule = \"constant\".")
        return
    if not callable(optimizer):
        raise RecipeError(
            "optimizer= takes a keras.optimizers.Optimizer or a callable "
            f"(stage, steps_per_epoch) -> optimizer. Received: {type(optimizer).__name__}.")


def with_python_optimizer(recipe: Any, optimizer: Any) -> Any:
    """`recipe` as it runs with `optimizer` from Python: ``optimizer.name = "custom"``
    (the optimizer's own keys and ``weight_decay`` dropped: the object holds its own), so
    the run folder never records an optimizer that was not used. Unchanged if None."""
    if optimizer is None:
        return recipe
    check_python_optimizer(optimizer, recipe["optimizer"])
    return recipe.with_overrides({"optimizer.name": PYTHON_OPTIMIZER,
                                  "optimizer.weight_decay": None})


def python_optimizer(optimizer: Any, stage: Any, learning_rate: Any,
                     steps_per_epoch: int | None) -> Any:
    """The optimizer a stage gets from ``Engine.run(optimizer=...)``.

    An instance is cloned from its config (``cls.from_config(get_config())``), so every
    stage starts with fresh moments; its learning rate becomes the stage's (rate or
    recipe schedule) unless it is a schedule itself, which is kept as given. A callable
    is called as ``optimizer(stage, steps_per_epoch)`` and its result used as it is.
    """
    if isinstance(optimizer, keras.optimizers.Optimizer):
        config = optimizer.get_config()
        if not isinstance(config.get("learning_rate"), Mapping):
            config["learning_rate"] = learning_rate
        return optimizer.__class__.from_config(config)
    result = optimizer(stage, steps_per_epoch)
    if not isinstance(result, keras.optimizers.Optimizer):
        raise RecipeError(
            f"The optimizer callable given from Python returned {type(result).__name__} for "
            f"stage '{stage.name}'; expected a keras.optimizers.Optimizer.")
    return result


def optimizer_record(stage: Any, optimizer: Any) -> dict[str, Any]:
    """What one stage's optimizer was, for ``optimizer.json``: class and config."""
    cls = type(optimizer)
    config = json.loads(json.dumps(optimizer.get_config(), default=_plain))
    return {"stage": stage.name, "class": f"{cls.__module__}.{cls.__qualname__}",
            "registered_name": keras.saving.get_registered_name(cls), "config": config}


def write_optimizer_record(run: Any) -> None:
    """Write ``optimizer.json`` into the run folder, if the run has one and its optimizer
    came from Python: per stage compiled, the optimizer's class and config. Stages a
    resumed run did not compile again keep their earlier record."""
    if run.path is None or not run.optimizers_used:
        return
    file = Path(run.path) / "optimizer.json"
    used = {record["index"]: record for record in run.optimizers_used}
    if file.is_file():
        earlier = json.loads(file.read_text(encoding="utf-8")).get("stages", [])
        used = {**{record["index"]: record for record in earlier}, **used}
    atomic_write(file, json.dumps({"source": "python",
                                   "stages": [used[i] for i in sorted(used)]}, indent=2))


def _plain(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return repr(value)


def carry_state(previous: Any, optimizer: Any, variables: list[Any]) -> int:
    """Build `optimizer` on `variables` and copy `previous`'s state into it: the step
    count and the slots (moments) of every variable both train; the learning rate stays
    the new one's. Returns the number of variables copied.

    Keras names a slot after its model variable's path (``<path>_momentum``), so slots
    match by name; a variable new in this stage keeps its fresh zero slots.
    """
    if type(previous) is not type(optimizer) or not getattr(previous, "built", False):
        return 0
    optimizer.build(variables)
    old = {variable.name: variable for variable in previous.variables}
    copied = 0
    for variable in optimizer.variables:
        source = old.get(variable.name)
        if (variable.name == "learning_rate" or source is None
                or tuple(source.shape) != tuple(variable.shape)):
            continue
        variable.assign(source)
        copied += 1
    return copied

