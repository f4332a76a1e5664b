"""Every hook finetunekit calls, grouped by concern.

* **Catalogue** hooks, ``finetunekit_register_<kind>s(register)``: a plugin calls
  ``register(component)`` once per component it contributes (a backbone, a strategy, a
  head, an optimizer, a format, a data source, an augmentation). The component carries
  its behaviour (``Strategy.plan``, ``Backbone.build``, ...): registering it is the one
  way to add to a concern, for the built-ins as for any other plugin. ``register``
  checks each component when it arrives and names the plugin on a problem.
* **Export**, ``finetunekit_export_model``: the one place where a plugin changes another
  plugin's result (LoRA merges its adapters before a model is written); and
  ``finetunekit_check_saved_model``, which may refuse a written file before it replaces
  the previous one (the ``keras_hub`` backbone's reload check).
* **Lifecycle** hooks let an observer (checkpoints, progress output, logging) follow a
  run; their return values are ignored.

Any unexpected exception raised by a hook implementation, or by a component's function,
is re-raised as :class:`~finetunekit.core.errors.PluginError` naming the plugin.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("finetunekit")

# -------------------------------------------------------------------------
# backbone loading
# -------------------------------------------------------------------------


@hookspec
def finetunekit_register_backbones(register):
    """Contribute backbones.

    :param register: call ``register(Backbone(...))`` once per backbone.
    """


# -------------------------------------------------------------------------
# freezing policy (strategy)
# -------------------------------------------------------------------------


@hookspec
def finetunekit_register_strategies(register):
    """Contribute strategies.

    :param register: call ``register(Strategy(...))`` once per strategy.
    """


# -------------------------------------------------------------------------
# head construction
# -------------------------------------------------------------------------


@hookspec
def finetunekit_register_heads(register):
    """Contribute heads.

    :param register: call ``register(Head(...))`` once per head.
    """


# -------------------------------------------------------------------------
# optimizer
# -------------------------------------------------------------------------


@hookspec
def finetunekit_register_optimizers(register):
    """Contribute optimizers.

    :param register: call ``register(Optimizer(...))`` once per optimizer.
    """


# -------------------------------------------------------------------------
# persistence
# -------------------------------------------------------------------------


@hookspec
def finetunekit_register_formats(register):
    """Contribute persistence formats.

    :param register: call ``register(Format(...))`` once per format.
    """


@hookspec(firstresult=True)
def finetunekit_export_model(model, format, run):
    """Give the model to write in place of ``model`` when a run or model is saved.

    LoRA answers it for a model with adapters: it returns a copy with each adapter
    merged into its kernel, so the saved file holds plain Keras layers. A wrapper
    (``@hookimpl(wrapper=True)``) sees and may change the answer of the others.

    :param model: the ``keras.Model`` about to be saved.
    :param format: the :class:`~finetunekit.Format` it is saved in.
    :param run: the :class:`~finetunekit.Run` it comes from, or None for a bare model.
    :return: a ``keras.Model`` to save instead, or None to save ``model`` as it is.

    Stops at first non-None result.
    """


@hookspec
def finetunekit_check_saved_model(model, path, format, run, reload):
    """Check a model file just written, before it takes its final name.

    Called after the format wrote the file under a temporary name beside `path`; raise
    :class:`~finetunekit.PersistenceError` to refuse it: the written file is removed and
    whatever was at `path` before stays as it was. The ``keras_hub`` backbone reloads a
    model holding KerasHub layers and compares its predictions.

    :param model: the ``keras.Model`` written (``finetunekit_export_model``'s answer, if any).
    :param path: the ``Path`` the file will have (not there yet; a previous file may be).
    :param format: the :class:`~finetunekit.Format` it was written in.
    :param run: the :class:`~finetunekit.Run` it comes from, or None for a bare model.
    :param reload: ``reload()`` loads the written file as :meth:`~finetunekit.Engine.load_model`
        would (a weights-only format rebuilds the run's recipe) and returns the model.
    """


# -------------------------------------------------------------------------
# data loading
# -------------------------------------------------------------------------


@hookspec
def finetunekit_register_data_sources(register):
    """Contribute data sources.

    :param register: call ``register(DataSource(...))`` once per data source.
    """


@hookspec
def finetunekit_register_augmentations(register):
    """Contribute augmentations.

    An :class:`~finetunekit.Augmentation` works inside the model (``build``: a layer on
    training batches), on images and labels together (``mix``: MixUp, CutMix, run by the
    engine on each epoch's training batches with soft labels), or both.

    :param register: call ``register(Augmentation(...))`` once per augmentation.
    """


# -------------------------------------------------------------------------
# lifecycle (observers; return values are ignored)
# -------------------------------------------------------------------------


@hookspec
def finetunekit_register_observers(register):
    """Contribute lifecycle plugins that have recipe keys or state.

    An :class:`~finetunekit.Observer` declares its own recipe section and keys (validated
    like a component's; present in the recipe, they turn the plugin on and reach its
    hooks as ``run.settings[section]``), and optionally ``state()``/``restore(state)``,
    saved in every epoch checkpoint and given back on resume. The plugin's behaviour is
    still its lifecycle hooks below; the observer only describes it.

    :param register: call ``register(Observer(...))`` once per lifecycle plugin.
    """


@hookspec
def finetunekit_run_start(run):
    """A run is about to train.

    :param run: the :class:`~finetunekit.Run` (recipe, model, plan, run folder).
    """


@hookspec
def finetunekit_stage_start(run, stage, index):
    """A stage is about to train; the model is already recompiled for it.

    :param run: the :class:`~finetunekit.Run`.
    :param stage: the :class:`~finetunekit.Stage`.
    :param index: int. Position of the stage in the plan, from 0.
    """


@hookspec
def finetunekit_batch_start(run, stage, batch):
    """A training step is about to be dispatched; it carries no metrics, so it costs no
    device sync. Progress displays use it. Keep implementations cheap: this runs every
    step, on the training thread, and only when some plugin implements it.

    :param run: the :class:`~finetunekit.Run` (``run.steps_per_epoch``, ``run.epoch``).
    :param stage: the :class:`~finetunekit.Stage` training.
    :param batch: int. Step number within the epoch, from 0.
    """


@hookspec
def finetunekit_batch_end(run, stage, batch, logs):
    """A training step finished, with its running metrics.

    Implementing it costs a device-to-host sync per step: Keras converts every step's
    logs to Python floats, on the training thread, before this runs (without any
    implementation, the engine leaves them on the device). Prefer
    ``finetunekit_batch_start`` or ``finetunekit_epoch_end`` when the values are not
    needed every step. Keep implementations cheap.

    :param run: the :class:`~finetunekit.Run`.
    :param stage: the :class:`~finetunekit.Stage` training.
    :param batch: int. Step number within the epoch, from 0.
    :param logs: dict of running metric values (Python floats).
    """


@hookspec
def finetunekit_epoch_end(run, stage, epoch, logs):
    """An epoch finished.

    :param run: the :class:`~finetunekit.Run`.
    :param stage: the :class:`~finetunekit.Stage` training.
    :param epoch: int. Epoch number over the whole run, from 1.
    :param logs: dict of metric name to float (loss, accuracy, val_loss, ...).

    Call ``run.request_stop(reason)`` to end the run cleanly after this epoch. The
    built-in checkpoint writer runs last (``trylast``), so its checkpoint holds the
    state that the other implementations left (the stop, an observer's ``state()``).
    """


@hookspec
def finetunekit_stage_end(run, stage, index, history):
    """A stage finished.

    :param run: the :class:`~finetunekit.Run`.
    :param stage: the :class:`~finetunekit.Stage`.
    :param index: int. Position of the stage in the plan, from 0.
    :param history: list of per-epoch dicts of this stage.
    """


@hookspec
def finetunekit_run_end(run):
    """A run finished training and was saved (if it saves).

    :param run: the :class:`~finetunekit.Run`; ``run.history`` holds every epoch.
    """


# -------------------------------------------------------------------------
# commands (apps above the engine)
# -------------------------------------------------------------------------


@hookspec
def finetunekit_register_commands(cli):
    """Add commands to the ``finetunekit`` command line.

    Called once when the command line starts, before it looks up a command: on the
    built-in command plugins (``run``, ``demo``, ``bench``, ...) first, then on the
    plugins of the ``finetunekit`` entry-point group. A command name must be unique; a
    duplicate is an error naming both plugins. Keep imports of Keras inside the
    commands so that ``finetunekit --help`` stays fast.

    :param cli: the ``click.Group`` of the command line; add commands with
        ``@cli.command()`` or ``cli.add_command(...)``.
    """
