"""Every hook finetunekit calls, grouped by concern.

Two kinds of hook per concern:

* a **catalogue** hook, ``finetunekit_register_<kind>s(register)``: a plugin calls
  ``register(component)`` once per component it contributes. Names must be unique across
  all plugins; a duplicate is an error naming both plugins.
* an **action** hook that does the work for the component a recipe selected. The built-in
  ``finetunekit.plugins.defaults`` implements each with ``trylast=True`` by calling the
  component's own function, so registering a component is all most plugins need. Another
  plugin can override an action by returning a non-None result first, or change the
  result with ``@hookimpl(wrapper=True)``.

Lifecycle hooks let an observer (progress output, checkpointing, logging) follow a run.
Any exception raised by a hook implementation is re-raised as
:class:`~finetunekit.core.errors.PluginError` naming the plugin and the hook.
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


@hookspec(firstresult=True)
def finetunekit_load_backbone(backbone, input_shape, weights, params):
    """Build the convolutional base a recipe selected, with its weights.

    :param backbone: the selected :class:`~finetunekit.Backbone`.
    :param input_shape: ``(height, width, channels)``, already checked against
        ``backbone.min_size``.
    :param weights: ``"imagenet"``, ``None`` (random initialisation) or a
        :class:`pathlib.Path` to a weights file.
    :param params: dict of the backbone's own validated recipe keys.
    :return: a ``keras.Model`` without its classification top.

    Stops at first non-None result.
    """


# -------------------------------------------------------------------------
# freezing policy (strategy)
# -------------------------------------------------------------------------


@hookspec
def finetunekit_register_strategies(register):
    """Contribute strategies.

    :param register: call ``register(Strategy(...))`` once per strategy.
    """


@hookspec(firstresult=True)
def finetunekit_plan_strategy(strategy, context, params):
    """Turn the base into a plan of stages.

    :param strategy: the selected :class:`~finetunekit.Strategy`.
    :param context: a :class:`~finetunekit.PlanContext` (base, blocks, epochs, learning
        rate, train_bn).
    :param params: dict of the strategy's own validated recipe keys.
    :return: a :class:`~finetunekit.Plan`.

    Stops at first non-None result.
    """


# -------------------------------------------------------------------------
# head construction
# -------------------------------------------------------------------------


@hookspec
def finetunekit_register_heads(register):
    """Contribute heads.

    :param register: call ``register(Head(...))`` once per head.
    """


@hookspec(firstresult=True)
def finetunekit_build_head(head, feature_shape, params):
    """Build the head that maps base features to predictions.

    :param head: the selected :class:`~finetunekit.Head`.
    :param feature_shape: shape of the base's output without the batch axis.
    :param params: dict of the head's validated recipe keys.
    :return: a :class:`~finetunekit.BuiltHead` (layer, loss, metrics).

    Stops at first non-None result.
    """


# -------------------------------------------------------------------------
# optimizer
# -------------------------------------------------------------------------


@hookspec
def finetunekit_register_optimizers(register):
    """Contribute optimizers.

    :param register: call ``register(Optimizer(...))`` once per optimizer.
    """


@hookspec(firstresult=True)
def finetunekit_build_optimizer(optimizer, learning_rate, weight_decay, params, stage):
    """Build a fresh optimizer for one stage (a new stage recompiles the model).

    :param optimizer: the selected :class:`~finetunekit.Optimizer`.
    :param learning_rate: float or a Keras ``LearningRateSchedule`` for this stage.
    :param weight_decay: float or None.
    :param params: dict of the optimizer's own validated recipe keys.
    :param stage: the :class:`~finetunekit.Stage` about to train.
    :return: a ``keras.optimizers.Optimizer``.

    Stops at first non-None result.
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
def finetunekit_save_model(format, model, path, run):
    """Write a model to ``path`` in the given format.

    The engine makes the write atomic: ``path`` is a temporary name beside the target
    (ending with ``format.suffix``), renamed over the target once this returns.

    :param format: the selected :class:`~finetunekit.Format`.
    :param model: the ``keras.Model`` to save.
    :param path: :class:`pathlib.Path` to write.
    :param run: the :class:`~finetunekit.Run` the model comes from (epoch, stage, recipe),
        or None when a bare model is saved.
    :return: the path written.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def finetunekit_load_model(format, path, safe_mode, template):
    """Read a model written by :func:`finetunekit_save_model`.

    :param format: the :class:`~finetunekit.Format` the file was written in.
    :param path: :class:`pathlib.Path` to read.
    :param safe_mode: bool. If True, refuse to deserialise arbitrary Python code.
    :param template: callable. ``template(stage=None, steps_per_epoch=None,
        own_recipe=None)`` returns a freshly built ``keras.Model`` of the run's recipe
        (or of ``own_recipe``, for a file that carries its recipe), compiled for
        ``stage`` when given; for formats that hold weights but no architecture. It
        raises :class:`~finetunekit.PersistenceError` when no recipe is known.
    :return: a ``keras.Model``.

    Stops at first non-None result.
    """


# -------------------------------------------------------------------------
# data loading
# -------------------------------------------------------------------------


@hookspec
def finetunekit_register_data_sources(register):
    """Contribute data sources.

    :param register: call ``register(DataSource(...))`` once per data source.
    """


@hookspec(firstresult=True)
def finetunekit_load_data(source, context, params):
    """Load training and validation data.

    :param source: the selected :class:`~finetunekit.DataSource`.
    :param context: a :class:`~finetunekit.DataContext` (input shape, batch size, seed).
    :param params: dict of the source's own validated recipe keys.
    :return: a :class:`~finetunekit.Data`; images as uint8 at the model's input size.

    Stops at first non-None result.
    """


@hookspec
def finetunekit_register_augmentations(register):
    """Contribute augmentations.

    An :class:`~finetunekit.Augmentation` works inside the model (``build``: a layer on
    training batches), on images and labels together (``mix``: MixUp, CutMix, run by the
    engine on each epoch's training batches with soft labels), or both.

    :param register: call ``register(Augmentation(...))`` once per augmentation.
    """


@hookspec(firstresult=True)
def finetunekit_build_augmentation(augmentation, input_shape, params):
    """Build the augmentation layer a recipe selected.

    :param augmentation: the selected :class:`~finetunekit.Augmentation`.
    :param input_shape: ``(height, width, channels)`` of the model's input.
    :param params: dict of its validated recipe keys.
    :return: a Keras layer, or None for no augmentation (then the next implementation
        is asked; the default returns whatever the component built, None included).
        A label-mixing augmentation's ``mix`` comes from the component, not this hook.

    Stops at first non-None result.
    """


# -------------------------------------------------------------------------
# lifecycle (observers; return values are ignored)
# -------------------------------------------------------------------------


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
def finetunekit_batch_end(run, stage, batch, logs):
    """A training step finished. Keep implementations cheap: this runs every step.

    :param run: the :class:`~finetunekit.Run`.
    :param stage: the :class:`~finetunekit.Stage` training.
    :param batch: int. Step number within the epoch, from 0.
    :param logs: dict of running metric values.
    """


@hookspec
def finetunekit_epoch_end(run, stage, epoch, logs):
    """An epoch finished.

    :param run: the :class:`~finetunekit.Run`.
    :param stage: the :class:`~finetunekit.Stage` training.
    :param epoch: int. Epoch number over the whole run, from 1.
    :param logs: dict of metric name to float (loss, accuracy, val_loss, ...).
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
