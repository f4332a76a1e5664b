"""The engine: recipe in, model and results out.

Read top to bottom. The three ways to train come first, :meth:`Engine.run`,
:meth:`Engine.resume` and :meth:`Engine.retrain`; each builds a :class:`Run` and hands it
to one shared path, :meth:`Engine._train_and_save`: load the data, write the recipe,
:meth:`Engine.fit` stage by stage, save the run folder, tell the observers. Below them:
building (:mod:`.assembly`), fitting, data, persistence (:mod:`.run_folder`), and the
plugin plumbing (:mod:`.manager`, :mod:`.catalogue`). Two parts of the Engine class
live beside it: saving and loading models and run folders (:mod:`.saving`), and what an
engine tells without training a run (``describe``, ``lr_find``, ``evaluate``,
``predict``: :mod:`.analysis`).

The engine knows no backbone, strategy, head, optimizer, format or data source by name:
each is a component that a plugin registered, used through the catalogue.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import keras

from finetunekit.core import assembly
from finetunekit.core.analysis import Analysis
from finetunekit.core.saving import Saving
from finetunekit.core.callbacks import StageCallbacks, run_callbacks_of
from finetunekit.core.catalogue import Catalogue
from finetunekit.core.checkpoint import (
    Checkpoint,
    list_checkpoints,
    restore_model,
    restore_optimizer,
    refuse_finished,
    resume_point,
)
from finetunekit.core.components import Data, DataContext
from finetunekit.core.distribution import Distributions
from finetunekit.core.errors import PersistenceError
from finetunekit.core.feature_cache import FeatureCache, head_stage, uses_cache
from finetunekit.core.manager import call_hook, get_plugin_manager, register_plugin
from finetunekit.core.precision import precision_scope
from finetunekit.core.recipe import Recipe
from finetunekit.core.scoping import scoped
from finetunekit.core.schedules import with_python_optimizer
from finetunekit.core.folder_lock import hold_run_folder, refuse_if_held
from finetunekit.core.run_folder import (
    atomic_write,
    check_run_folder,
    locate_model,
    recipe_beside,
    retrain_recipe,
)
from finetunekit.core.weight_matching import copy_weights
from finetunekit.core.training import (
    EpochLines,
    Lifecycle,
    Run,
    check_data,
    first_images,
    fit_epoch,
    steps_per_epoch,
)

logger = logging.getLogger("finetunekit.engine")


class Engine(Analysis, Saving):
    """Builds, trains and saves models from recipes, with its own plugin manager.

    Args:
        plugins: iterable. Extra plugins: modules, dotted module paths, or objects with
            ``@finetunekit.hookimpl`` methods.
        builtins: bool. Register the built-in plugins. Defaults to True.
        entry_points: bool. Load plugins from the ``finetunekit`` entry-point group.
            Defaults to True.
        verbose: int. 0 prints nothing; 1 prints a line per stage and per epoch on
            stderr (:class:`~finetunekit.core.training.EpochLines`; the CLI shows a
            progress bar instead). Defaults to 0.

    Attributes:
        pm: the engine's own ``pluggy.PluginManager``.
        feature_cache: :class:`~finetunekit.core.feature_cache.FeatureCache` of this
            engine (base features of frozen-base stages, computed once).
        distributions: :class:`~finetunekit.core.distribution.Distributions` of this
            engine (its ``train.distribution`` strategies, created on first use).

    Example:

    >>> engine = Engine()
    >>> recipe = Recipe.from_dict({"backbone": {"name": "vgg16", "weights": "none",
    ...     "input_shape": [32, 32, 3]}, "head": {"classes": 1}})
    >>> run = engine.build(recipe)
    >>> run.model.output_shape
    (None, 1)
    """

    def __init__(self, plugins: Iterable[Any] = (), *, builtins: bool = True,
                 entry_points: bool = True, verbose: int = 0):
        if verbose:
            plugins = [*plugins, EpochLines()]
        self.pm = get_plugin_manager(plugins, builtins=builtins, entry_points=entry_points)
        self._catalogue: Catalogue | None = None
        self.feature_cache = FeatureCache()
        self.distributions = Distributions()

    # -- the three ways to train ---------------------------------------------------

    def run(self, recipe: Recipe, *, data: Data | None = None, save: bool = True,
            callbacks: Iterable[keras.callbacks.Callback] = (), optimizer: Any = None) -> Run:
        """Build, load data (unless given), train and save (if ``save.path`` is set).

        With ``save.path`` set, a checkpoint is written at every epoch end (keeping
        ``save.keep_checkpoints``), so :meth:`resume` can continue an interrupted run.

        Args:
            recipe: the :class:`~finetunekit.Recipe`.
            data: :class:`~finetunekit.Data` or None. Use this instead of ``[data]``.
            save: bool. Write the run folder when ``save.path`` is set. Defaults to True.
            callbacks: Keras callbacks, called as over one ``fit`` spanning every stage
                (docs/python.md, "Callbacks and stopping"). One that sets
                ``model.stop_training`` ends the run after the epoch (``run.stopped``).
            optimizer: a ``keras.optimizers.Optimizer`` (cloned per stage), a callable
                ``(stage, steps_per_epoch) -> optimizer``, or None for the recipe's
                (docs/python.md, "Your own optimizer"; recorded in ``optimizer.json``).
        """
        recipe = with_python_optimizer(recipe, optimizer)
        self.validate(recipe, data=data is None)
        with self._new_run_folder(recipe if save else None, "run") as path:
            run = self.build(recipe)
            run.optimizer = optimizer
            return self._train_and_save(run, data, path, callbacks=callbacks)

    def resume(self, run_dir: str | Path, *, data: Data | None = None,
               callbacks: Iterable[keras.callbacks.Callback] = (), optimizer: Any = None) -> Run:
        """Continue an interrupted run from the newest checkpoint in its folder.

        On the CPU with a fixed seed the final weights are bit-identical to those of a
        run that was never interrupted, across stages and early stopping (the stop and
        the callbacks' state travel in the checkpoint: pass the same `callbacks` and
        `optimizer` as the interrupted run). A folder killed before its first checkpoint
        starts over from its recipe.toml, with a warning. The folder is held like a new
        run's (:func:`~finetunekit.core.folder_lock.hold_run_folder`).

        Raises:
            PersistenceError: the run is finished, or the folder has neither checkpoint
                nor recipe, or its recipe.toml was edited since the checkpoint (the
                message names the keys), or another process holds the folder.
        """
        run_dir = Path(run_dir)
        try:
            checkpoint, recipe = resume_point(run_dir)
        except PersistenceError:
            refuse_if_held(run_dir)  # a run that has not written its recipe yet holds it
            raise
        writes = self.distributions.writes(recipe["train"]["distribution"])
        with hold_run_folder(run_dir, "resume") if writes else contextlib.nullcontext():
            if writes and checkpoint is not None and list_checkpoints(run_dir)[-1:] != [checkpoint.path]:
                checkpoint, recipe = resume_point(run_dir)  # written before we held the folder
            run = self.build(with_python_optimizer(recipe, optimizer))
            run.optimizer = optimizer
            refuse_finished(run_dir, checkpoint, run.plan.epochs)
            return self._train_and_save(run, data, run_dir if writes else None,
                                        resume=checkpoint, callbacks=callbacks)

    def retrain(self, model_path: str | Path, *, recipe: Recipe | None = None,
                overrides: Iterable[str] | dict[str, Any] = (), data: Data | None = None,
                safe_mode: bool = True, callbacks: Iterable[keras.callbacks.Callback] = (),
                optimizer: Any = None) -> Run:
        """Load a saved model and train it further, keeping or changing the strategy.

        Args:
            model_path: a model file (keras, h5, checkpoint, weights) or a run folder.
            recipe: :class:`~finetunekit.Recipe` or None. None reads ``recipe.toml``
                beside the model (a run folder).
            overrides: ``section.key=value`` changes: new data, strategy, epochs,
                ``save.path`` for the new run.
            data: :class:`~finetunekit.Data` or None, instead of ``[data]``.
            safe_mode: bool. Refuse models that carry Python code.
            callbacks: Keras callbacks, as for :meth:`run`.
            optimizer: a Keras optimizer, a callable, or None, as for :meth:`run`.
        """
        file, fmt = locate_model(Path(model_path), self.catalogue)
        if not fmt.trainable:
            raise PersistenceError(
                f"'{file}' is a {fmt.name} export; Keras 3 cannot train a model loaded from "
                "it. Retrain from the run's model.keras or a checkpoint (format 'keras' or "
                "'checkpoint').")
        new = retrain_recipe((recipe or recipe_beside(file)).with_overrides(overrides), file)
        new = with_python_optimizer(new, optimizer)
        self.validate(new, data=data is None)
        with self._new_run_folder(new, "retrain") as path:
            run = self.build(new)
            run.optimizer = optimizer
            loaded = self.load_model(file, format=fmt.name, safe_mode=safe_mode, recipe=recipe)
            copy_weights(loaded, run.model, file)
            return self._train_and_save(run, data, path, callbacks=callbacks)

    @contextlib.contextmanager
    def _new_run_folder(self, recipe: Recipe | None, command: str) -> Iterator[Path | None]:
        """Hold the run folder a new run writes, checked to be free and writable, while
        the block runs; None if it writes none (:func:`~.folder_lock.hold_run_folder`)."""
        if recipe is None or not recipe["save"]["path"] or not self.distributions.writes(
                recipe["train"]["distribution"]):
            yield None  # no folder asked, or another process of the cluster writes it
            return
        path = Path(recipe["save"]["path"])
        with hold_run_folder(path, command):
            check_run_folder(path, overwrite=recipe["save"]["overwrite"])
            yield path

    def _train_and_save(self, run: Run, data: Data | None, path: Path | None, *,
                        resume: Checkpoint | None = None, callbacks: Iterable[Any] = ()) -> Run:
        """The path every run takes once built: data, recipe first, fit, save, observers."""
        data = data if data is not None else self.load_data(run.recipe)
        if path is not None:
            if resume is None:
                path.mkdir(parents=True, exist_ok=True)
                atomic_write(path / "recipe.toml", run.recipe.to_toml())
            run.path = path
        self.fit(run, data, resume=resume, callbacks=callbacks)
        if path is not None:
            self.save_run(run)
        self.call("finetunekit_run_end", run=run)
        return run

    # -- building and training ---------------------------------------------------------

    @scoped
    def build(self, recipe: Recipe) -> Run:
        """Build the model a recipe describes, prepared (not compiled) for its first stage.

        ``[data]`` is not checked here: building needs no data.
        """
        self.validate(recipe, data=False)
        return assembly.assemble(self.catalogue, recipe)

    @scoped
    def fit(self, run: Run, data: Data, *, resume: Checkpoint | None = None,
            callbacks: Iterable[keras.callbacks.Callback] = ()) -> Run:
        """Train `run` on `data`, stage by stage, recompiling at each stage.

        Stops early, after an epoch, when a callback sets ``model.stop_training`` or a
        lifecycle hook calls ``run.request_stop(reason)`` (``run.stopped`` says when and
        why); raises :class:`~finetunekit.NonFiniteLossError` if the loss becomes NaN.

        Args:
            run: the :class:`Run` from :meth:`build`.
            data: :class:`~finetunekit.Data`.
            resume: a :class:`~finetunekit.core.checkpoint.Checkpoint` of this recipe, or
                None. Training continues after its epoch with its model state, and with
                its optimizer state if that stage was not finished.
            callbacks: Keras callbacks over the whole run (:meth:`run`).
        """
        try:
            self._fit(run, data, resume, callbacks)
        except BaseException:
            run.writes.wait(quiet=True)  # the last good checkpoint is on disk, then raise
            raise
        run.writes.wait()
        return run

    def _fit(self, run: Run, data: Data, resume: Checkpoint | None,
             callbacks: Iterable[keras.callbacks.Callback]) -> None:
        recipe = run.recipe
        check_data(data, run)
        self.distributions.check_data(recipe["train"]["distribution"], data.train)
        run.class_names = data.class_names
        batch_size, seed = recipe["data"]["batch_size"], recipe["train"]["seed"]
        steps = run.steps_per_epoch = steps_per_epoch(data.train, batch_size)
        keras.utils.set_random_seed(seed)
        start = resume.epoch if resume else 0
        state = resume.state if resume else {}
        run.stopped, run.epoch = state.get("stopped"), start
        if resume:
            run.history = [dict(row) for row in resume.history]
        run_callbacks = run_callbacks_of(self.catalogue, run, callbacks, state, steps)
        loop = self.distributions.epoch_loop(recipe["train"]["distribution"])
        self.call("finetunekit_run_start", run=run)
        epoch, last = 0, len(run.plan.stages) - 1
        for index, stage in enumerate(run.plan.stages):
            end = epoch + stage.epochs
            if run.stopped and resume is None:
                break
            if end <= start and index < last:  # finished before the checkpoint
                epoch = end
                continue
            self.compile_stage(run, index, steps)
            if resume is not None:
                restore_model(run.model, resume)
                if index == resume.stage_index and resume.optimizer:
                    restore_optimizer(run.model, resume)
                resume = None
            if run.stopped:  # a resumed run that had stopped: only its model was needed
                break
            self.call("finetunekit_stage_start", run=run, stage=stage, index=index)
            first = len(run.history)
            trainer, stage_data = run.model, data
            if uses_cache(run, stage, data) and start < end:
                trainer, stage_data = self.cached_head(run, data, batch_size)
            run_callbacks.begin(trainer, state.get("callbacks"))
            # the stage's schedule may need a callback (plateau): compile_stage sets them
            # one list for the stage's fit calls; it skips batch methods nothing implements
            lifecycle = StageCallbacks([Lifecycle(self, run, stage, run_callbacks),
                                        *run.stage_callbacks], trainer,
                                       {"epochs": run.plan.epochs, "steps": steps, "verbose": 0})
            trainer.stop_training = False  # as Keras's fit does; the epoch loop does not
            for current in range(max(epoch, start), end):
                epoch_data = (run.mix.epoch(stage_data, batch_size, current, seed)
                              if run.mix else stage_data)
                fit_epoch(trainer, epoch_data, batch_size, current, seed, lifecycle, loop,
                          shard=self.distributions.shard(recipe["train"]["distribution"]))
                if getattr(trainer, "stop_training", False):
                    run.request_stop("model.stop_training was set")
                if run.stopped:
                    break
            epoch = end
            self.call("finetunekit_stage_end", run=run, stage=stage, index=index,
                      history=run.history[first:])
        run_callbacks.end()
        first = first_images(data.train)
        if first is not None:
            # a cached stage trains the head alone; one call marks the whole model as
            # used, which Keras's exporters require
            run.model(first, training=False)

    @scoped
    def prepare_stage(self, run: Run, index: int) -> None:
        """Set trainable flags for stage `index` and compose the model for it."""
        assembly.compose(run, index)

    @scoped
    def compile_stage(self, run: Run, index: int, steps_per_epoch: int | None = None) -> None:
        """Prepare stage `index` and compile it with a fresh optimizer (Keras 3 reads
        trainable flags at compile time, so every stage recompiles).

        Args:
            run: the :class:`Run`.
            index: int. The stage, from 0.
            steps_per_epoch: int or None. Needed by the cosine schedule.
        """
        assembly.compile_stage(self.catalogue, run, index, steps_per_epoch)

    @scoped
    def cached_head(self, run: Run, data: Data, batch_size: int) -> tuple[Any, Data]:
        """The head alone, compiled with the stage's optimizer, and the data as the frozen
        base's features (from :attr:`feature_cache`), for a stage that trains the head only."""
        return head_stage(self.feature_cache, run, data, batch_size)

    def load_data(self, recipe: Recipe) -> Data:
        """Load the data a recipe's ``[data]`` section describes."""
        source, params = self.select(recipe, "data")
        context = DataContext(input_shape=tuple(recipe["backbone"]["input_shape"]),
                              batch_size=recipe["data"]["batch_size"], seed=recipe["train"]["seed"])
        return self.catalogue.call("data", source, "load", context, params=params,
                                   expect=(lambda d: isinstance(d, Data), "a finetunekit.Data"))

    # -- plugins and recipes -------------------------------------------------------------

    def register(self, plugin: Any) -> str:
        """Register one more plugin; returns its name."""
        name = register_plugin(self.pm, plugin)
        self._catalogue = None
        return name

    @property
    def catalogue(self) -> Catalogue:
        """Every component the registered plugins contribute (collected on first use)."""
        if self._catalogue is None:
            self._catalogue = Catalogue(self.pm)
        return self._catalogue

    def components(self) -> list[dict[str, Any]]:
        """Every component as a dict: kind, name, plugin, description, params."""
        return self.catalogue.rows()

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call a hook; an unexpected exception becomes a PluginError naming the plugin."""
        return call_hook(self.pm, hook, **kwargs)

    def select(self, recipe: Recipe, section: str) -> tuple[Any, dict[str, Any]]:
        """The component a recipe section names, and its validated own keys."""
        return self.catalogue.select(recipe, section)

    def validate(self, recipe: Recipe, *, data: bool = True) -> None:
        """Check every component name and key a recipe uses (``[data]`` only if `data`)."""
        self.catalogue.validate(recipe, data=data)

    @contextlib.contextmanager
    def scope(self, recipe: Recipe) -> Iterator[None]:
        """The context a recipe's models are built, compiled and trained in: its
        ``train.distribution`` strategy (:mod:`finetunekit.core.distribution`) and its
        ``train.precision`` as Keras's dtype policy, restored on leaving
        (:mod:`finetunekit.core.precision`)."""
        with self.distributions.scope(recipe["train"]["distribution"]), \
                precision_scope(recipe["train"]["precision"]):
            yield
