"""The engine: recipe in, model and results out.

It owns no knowledge of any backbone, strategy, head, optimizer, format or data source:
each comes from a plugin through the hooks in :mod:`finetunekit.core.hookspecs`. Reading
:meth:`Engine.run` top to bottom gives the whole flow: validate, build, load data, train
stage by stage (recompiling after each trainability change), save.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import keras

from finetunekit.core import stages
from finetunekit.core.checkpoint import (
    CHECKPOINT_DIR,
    Checkpoint,
    list_checkpoints,
    read_checkpoint,
    restore_model,
    restore_optimizer,
)
from finetunekit.core.components import BuiltHead, Data, DataContext, Plan, PlanContext
from finetunekit.core.distribution import Distributions, check_distribution
from finetunekit.core.feature_cache import FeatureCache, head_model, uses_cache
from finetunekit.core.errors import DataError, PersistenceError, PluginError, RecipeError
from finetunekit.core.mixing import LabelMixing
from finetunekit.core.params import validate_section
from finetunekit.core.run_folder import atomic_save, atomic_write, check_run_folder, history_csv
from finetunekit.core.precision import output_dtype, precision_scope
from finetunekit.core.manager import (
    Catalogue,
    call_hook,
    get_plugin_manager,
    register_plugin,
    require_result,
)
from finetunekit.core.recipe import COMPONENT_KIND, CORE_KEYS, NAME_KEYS, Recipe
from finetunekit.core.training import (
    Lifecycle,
    Run,
    check_data,
    copy_weights,
    fit_epoch,
    fresh_metric,
    layer_row,
    steps_per_epoch,
)


def _scoped(method: Callable) -> Callable:
    """Run an Engine method inside :meth:`Engine.scope` of its recipe (or its run's)."""
    @functools.wraps(method)
    def wrapper(self: Engine, target: Any, *args: Any, **kwargs: Any) -> Any:
        with self.scope(getattr(target, "recipe", target)):
            return method(self, target, *args, **kwargs)
    return wrapper


class Engine:
    """Builds, trains and saves models from recipes, with its own plugin manager.

    Args:
        plugins: iterable. Extra plugins: modules, dotted module paths, or objects with
            ``@finetunekit.hookimpl`` methods.
        builtins: bool. Register the built-in plugins. Defaults to True.
        entry_points: bool. Load plugins from the ``finetunekit`` entry-point group.
            Defaults to True.

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

    def __init__(
        self,
        plugins: Iterable[Any] = (),
        *,
        builtins: bool = True,
        entry_points: bool = True,
    ):
        self.pm = get_plugin_manager(plugins, builtins=builtins, entry_points=entry_points)
        self._catalogue: Catalogue | None = None
        self.feature_cache = FeatureCache()
        self.distributions = Distributions()

    # -- plugins -------------------------------------------------------------

    def register(self, plugin: Any) -> str:
        """Register one more plugin; returns its name."""
        name = register_plugin(self.pm, plugin)
        self._catalogue = None
        return name

    @property
    def catalogue(self) -> Catalogue:
        """Every component the registered plugins contribute."""
        if self._catalogue is None:
            self._catalogue = Catalogue(self.pm)
        return self._catalogue

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call a hook; an unexpected exception becomes a PluginError naming the plugin."""
        return call_hook(self.pm, hook, self.catalogue.code_owners, **kwargs)

    def components(self) -> list[dict[str, Any]]:
        """Every component as a dict: kind, name, plugin, description, params."""
        rows = []
        for kind, name, component, plugin in self.catalogue:
            params = getattr(component, "params", {}) or {}
            rows.append({
                "kind": kind,
                "name": name,
                "plugin": plugin,
                "description": component.description,
                "params": {
                    key: {"type": p.describe_type(), "default": None if p.required else p.default,
                          "required": p.required, "help": p.help}
                    for key, p in params.items()
                },
            })
        return rows

    # -- recipes -------------------------------------------------------------

    def select(self, recipe: Recipe, section: str) -> tuple[Any, dict[str, Any]]:
        """The component a recipe section names, and its validated own keys."""
        kind = COMPONENT_KIND[section]
        name_key = NAME_KEYS[section]
        name = recipe[section][name_key]
        component = self.catalogue.get(kind, name, key=f"{section}.{name_key}")
        schema = dict(getattr(component, "params", {}) or {})
        clash = set(schema) & set(CORE_KEYS[section])
        if clash:
            raise PluginError(
                f"{kind.capitalize()} '{name}' from plugin '{self.catalogue.plugin_of(kind, name)}' "
                f"declares keys the engine owns: {sorted(clash)}. Rename them.",
                plugin=self.catalogue.plugin_of(kind, name),
            )
        extras = recipe.extras(section)
        unknown = set(extras) - set(schema)
        if unknown:
            # report with every key the section accepts, engine's and component's
            schema_all = {**{k: None for k in CORE_KEYS[section]}, **schema}
            validate_section(section, schema_all, {k: None for k in unknown},
                             owner=f"{kind} '{name}'")
        return component, validate_section(section, schema, extras, owner=f"{kind} '{name}'")

    def validate(self, recipe: Recipe, *, data: bool = True) -> None:
        """Check every component name and key a recipe uses, without building anything.

        Args:
            recipe: the :class:`~finetunekit.Recipe`.
            data: bool. Check ``[data]`` too; False when data comes from Python.
        """
        for section in NAME_KEYS:
            if data or section != "data":
                self.select(recipe, section)
        check_distribution(recipe["train"]["distribution"])

    # -- building ------------------------------------------------------------

    @contextlib.contextmanager
    def scope(self, recipe: Recipe) -> Iterator[None]:
        """The context a recipe's models are built, compiled and trained in: its
        ``train.distribution`` strategy (:mod:`finetunekit.core.distribution`) and its
        ``train.precision`` as Keras's dtype policy, restored on leaving
        (:mod:`finetunekit.core.precision`)."""
        with self.distributions.scope(recipe["train"]["distribution"]), \
                precision_scope(recipe["train"]["precision"]):
            yield

    def _weights(self, recipe: Recipe) -> str | Path | None:
        value = recipe["backbone"]["weights"]
        if value.lower() == "none":
            return None
        if value.lower() == "imagenet":
            return "imagenet"
        path = Path(value).expanduser()
        if not path.is_file():
            raise RecipeError(
                f"'backbone.weights' must be \"imagenet\", \"none\" or the path of a weights "
                f"file. Received: backbone.weights={value!r}, and no such file exists."
            )
        return path

    @_scoped
    def build(self, recipe: Recipe) -> Run:
        """Build the model a recipe describes, prepared (not compiled) for its first stage.

        ``[data]`` is not checked here: building needs no data.
        """
        self.validate(recipe, data=False)
        keras.utils.set_random_seed(recipe["train"]["seed"])
        backbone, backbone_params = self.select(recipe, "backbone")
        input_shape = tuple(recipe["backbone"]["input_shape"])
        if min(input_shape[:2]) < backbone.min_size:
            raise RecipeError(
                f"Backbone '{backbone.name}' needs inputs of at least {backbone.min_size}x"
                f"{backbone.min_size}. Received: backbone.input_shape={list(input_shape)}. "
                "Raise the height and width (images are resized on load)."
            )
        base = self.call("finetunekit_load_backbone", backbone=backbone, input_shape=input_shape,
                         weights=self._weights(recipe), params=backbone_params)
        require_result(self.pm, "finetunekit_load_backbone", base,
                       lambda b: isinstance(b, keras.Model), "a keras.Model")
        names = [layer.name for layer in base.layers]
        blocks = [list(b) for b in backbone.blocks(base)] if backbone.blocks else [[name] for name in names]

        head, head_params = self.select(recipe, "head")
        built_head = self.call("finetunekit_build_head", head=head,
                               feature_shape=tuple(base.output_shape[1:]), params=head_params)
        require_result(self.pm, "finetunekit_build_head", built_head,
                       lambda h: isinstance(h, BuiltHead), "a finetunekit.BuiltHead")

        built_head.layer.build((None, *base.output_shape[1:]))
        strategy, strategy_params = self.select(recipe, "strategy")
        context = PlanContext(
            base=base, blocks=blocks, epochs=recipe["train"]["epochs"],
            learning_rate=recipe["optimizer"]["learning_rate"],
            train_bn=recipe["strategy"]["train_bn"], head=built_head.layer,
        )
        plan = self.call("finetunekit_plan_strategy", strategy=strategy, context=context,
                         params=strategy_params)
        require_result(self.pm, "finetunekit_plan_strategy", plan, lambda p: isinstance(p, Plan),
                       "a finetunekit.Plan")
        for stage in plan.stages:
            unknown = sorted(set(stage.trainable) - set(names))
            if unknown:
                plugin = self.catalogue.plugin_of("strategy", strategy.name)
                raise PluginError(
                    f"Strategy '{strategy.name}' (plugin '{plugin}') planned stage "
                    f"'{stage.name}' with layers the base does not have: {unknown[:5]}.",
                    plugin=plugin, hook="finetunekit_plan_strategy",
                )

        preprocess = backbone.preprocess() if backbone.preprocess else keras.layers.Identity(name="preprocess")
        augmentation, augment_params = self.select(recipe, "augment")
        augment = self.call("finetunekit_build_augmentation", augmentation=augmentation,
                            input_shape=input_shape, params=augment_params)
        run = Run(recipe=recipe, base=base, blocks=blocks, head=built_head, plan=plan,
                  model=None, preprocess=preprocess, augment=augment,
                  variable_flags=stages.variable_flags(base))
        self.prepare_stage(run, 0)
        # the soft labels' width is the model's output width, known once it is composed
        run.mix = LabelMixing.of(augmentation, augment_params, built_head,
                                 int(run.model.output_shape[-1]))
        if run.mix is not None:
            run.head = run.mix.head
        if output_dtype(run.model) != "float32":
            plugin = self.catalogue.plugin_of("head", head.name)
            raise PluginError(
                f"Head '{head.name}' (plugin '{plugin}') outputs {output_dtype(run.model)} under "
                f"train.precision = \"{recipe['train']['precision']}\"; the loss needs float32. "
                "Give the head's last layer dtype=\"float32\".",
                plugin=plugin, hook="finetunekit_build_head",
            )
        return run

    @_scoped
    def prepare_stage(self, run: Run, index: int) -> None:
        """Set trainable flags for stage `index` and compose the model for it.

        The base is called with ``training=False`` when the stage freezes all of it, so
        that its dropout and BatchNorm layers behave as at inference.
        """
        stage = run.plan.stages[index]
        stages.apply_trainable(run.base, stage.trainable, train_bn=stage.train_bn,
                                 variables=stage.variables, original=run.variable_flags)
        frozen = not stage.trainable
        input_shape = tuple(run.recipe["backbone"]["input_shape"])
        inputs = keras.Input(shape=input_shape, dtype="uint8", name="image")
        pixels = run.augment(inputs) if run.augment is not None else inputs
        features = run.base(run.preprocess(pixels), training=False if frozen else None)
        outputs = run.head.layer(features)
        run.model = keras.Model(inputs, outputs, name="finetunekit_model")
        run.stage_index = index

    # -- describing ----------------------------------------------------------

    def describe(self, recipe: Recipe) -> dict[str, Any]:
        """Build without training; report layers, parameter counts and the plan."""
        run = self.build(recipe)
        layers = []
        for layer in run.model.layers:
            if layer is run.base or layer is run.head.layer:
                part = "base" if layer is run.base else "head"
                inner = getattr(layer, "layers", [layer])
                layers += [layer_row(sub, part) for sub in inner]
            elif layer is run.preprocess:
                layers.append(layer_row(layer, "preprocess"))
            elif layer is run.augment:
                layers.append(layer_row(layer, "augment"))
        stages = []
        for index, stage in enumerate(run.plan.stages):
            self.prepare_stage(run, index)
            stages.append({**stage.to_dict(),
                           "trainable_params": stages.trainable_param_count(run.model)})
        self.prepare_stage(run, 0)
        total = int(run.model.count_params())
        trainable = stages.trainable_param_count(run.model)
        return {
            "backbone": recipe["backbone"]["name"],
            "input_shape": recipe["backbone"]["input_shape"],
            "strategy": recipe["strategy"]["name"],
            "layers": layers,
            "total_params": total,
            "trainable_params": trainable,
            "non_trainable_params": total - trainable,
            "blocks": [list(block) for block in run.blocks],
            "plan": stages,
        }

    # -- data ----------------------------------------------------------------

    def load_data(self, recipe: Recipe) -> Data:
        """Load the data a recipe's ``[data]`` section describes."""
        source, params = self.select(recipe, "data")
        context = DataContext(
            input_shape=tuple(recipe["backbone"]["input_shape"]),
            batch_size=recipe["data"]["batch_size"],
            seed=recipe["train"]["seed"],
        )
        data = self.call("finetunekit_load_data", source=source, context=context, params=params)
        return require_result(self.pm, "finetunekit_load_data", data, lambda d: isinstance(d, Data),
                              "a finetunekit.Data")

    # -- training ------------------------------------------------------------

    @_scoped
    def compile_stage(self, run: Run, index: int, steps_per_epoch: int | None = None) -> None:
        """Prepare stage `index` (trainable flags, model) and compile it with a fresh optimizer.

        Keras 3 reads trainable flags at compile time, so every stage recompiles.

        Args:
            run: the :class:`Run`.
            index: int. The stage, from 0.
            steps_per_epoch: int or None. Needed by the cosine schedule.
        """
        recipe = run.recipe
        stage = run.plan.stages[index]
        self.prepare_stage(run, index)
        optimizer, optimizer_params = self.select(recipe, "optimizer")
        learning_rate: Any = stage.learning_rate
        if recipe["optimizer"]["schedule"] == "cosine":
            if steps_per_epoch is None:
                raise DataError(
                    "optimizer.schedule = \"cosine\" needs the number of steps per epoch, "
                    "but the training data does not say how many batches it has. Use "
                    "arrays, a finite dataset, or schedule = \"constant\"."
                )
            learning_rate = keras.optimizers.schedules.CosineDecay(
                stage.learning_rate, decay_steps=max(1, steps_per_epoch * stage.epochs))
        opt = self.call("finetunekit_build_optimizer", optimizer=optimizer,
                        learning_rate=learning_rate,
                        weight_decay=recipe["optimizer"]["weight_decay"],
                        params=optimizer_params, stage=stage)
        require_result(self.pm, "finetunekit_build_optimizer", opt,
                       lambda o: isinstance(o, keras.optimizers.Optimizer),
                       "a keras.optimizers.Optimizer")
        if stage.lr_scales:
            by_path = {variable.path: stage.lr_scales[layer.name]
                       for layer in run.base.layers if layer.name in stage.lr_scales
                       for variable in layer.weights}
            stages.scale_learning_rates(opt, lambda variable: by_path.get(variable.path, 1.0))
        run.model.compile(optimizer=opt, loss=run.head.loss, metrics=run.head.metrics)

    @_scoped
    def fit(self, run: Run, data: Data, *, resume: Checkpoint | None = None) -> Run:
        """Train `run` on `data`, stage by stage, recompiling at each stage.

        Args:
            run: the :class:`Run` from :meth:`build`.
            data: :class:`~finetunekit.Data`.
            resume: a :class:`~finetunekit.core.checkpoint.Checkpoint` of this recipe, or
                None. Training continues after its epoch with its model state, and with
                its optimizer state if that stage was not finished.
        """
        check_data(data, run)
        self.distributions.check_data(run.recipe["train"]["distribution"], data.train)
        run.class_names = data.class_names
        batch_size = run.recipe["data"]["batch_size"]
        steps = run.steps_per_epoch = steps_per_epoch(data.train, batch_size)
        keras.utils.set_random_seed(run.recipe["train"]["seed"])
        start = resume.epoch if resume else 0
        if resume:
            run.history = [dict(row) for row in resume.history]
        self.call("finetunekit_run_start", run=run)
        epoch = 0
        last = len(run.plan.stages) - 1
        for index, stage in enumerate(run.plan.stages):
            end = epoch + stage.epochs
            if end <= start and index < last:  # finished before the checkpoint
                epoch = end
                continue
            self.compile_stage(run, index, steps)
            if resume is not None:
                restore_model(run.model, resume)
                if index == resume.stage_index and resume.optimizer:
                    restore_optimizer(run.model, resume)
                resume = None
            self.call("finetunekit_stage_start", run=run, stage=stage, index=index)
            first = len(run.history)
            callbacks = [Lifecycle(self, run, stage)]
            trainer, stage_data = run.model, data
            if uses_cache(run, stage, data) and start < end:
                trainer, stage_data = self.cached_head(run, data, batch_size)
            seed = run.recipe["train"]["seed"]
            loop = self.distributions.epoch_loop(run.recipe["train"]["distribution"])
            for current in range(max(epoch, start), end):
                epoch_data = (run.mix.epoch(stage_data, batch_size, current, seed)
                              if run.mix else stage_data)
                fit_epoch(trainer, epoch_data, batch_size, current, seed, callbacks, loop)
            epoch = end
            self.call("finetunekit_stage_end", run=run, stage=stage, index=index,
                      history=run.history[first:])
        if isinstance(data.train, tuple) and len(data.train[0]):
            # a cached stage trains the head alone; one call marks the whole model as
            # used, which Keras's exporters require
            run.model(data.train[0][:1], training=False)
        return run

    @_scoped
    def cached_head(self, run: Run, data: Data, batch_size: int) -> tuple[Any, Data]:
        """The head alone, compiled with the stage's optimizer, and the data as the frozen
        base's features (from :attr:`feature_cache`), for a stage that trains the head only."""
        def features(pair):
            return None if pair is None else (
                self.feature_cache.features(run, pair[0], batch_size), pair[1])

        trainer = head_model(run)
        trainer.compile(optimizer=run.model.optimizer, loss=run.head.loss,
                        metrics=[fresh_metric(m) for m in run.head.metrics])
        return trainer, Data(train=features(data.train), validation=features(data.validation),
                             class_names=data.class_names)

    def run(self, recipe: Recipe, *, data: Data | None = None, save: bool = True) -> Run:
        """Build, load data (unless given), train and save (if ``save.path`` is set).

        With ``save.path`` set, a checkpoint is written at every epoch end (keeping
        ``save.keep_checkpoints``), so :meth:`resume` can continue an interrupted run.

        Args:
            recipe: the :class:`~finetunekit.Recipe`.
            data: :class:`~finetunekit.Data` or None. Use this instead of ``[data]``.
            save: bool. Write the run folder when ``save.path`` is set. Defaults to True.
        """
        return self._run(recipe, data=data, save=save)

    def _run(self, recipe: Recipe, *, data: Data | None, save: bool,
             start_from: Callable[[Run], None] | None = None) -> Run:
        """Validate, refuse a used run folder, build, (start from saved weights,) load
        data, write the recipe first, train, save, and tell the observers."""
        self.validate(recipe, data=data is None)
        path = Path(recipe["save"]["path"]) if save and recipe["save"]["path"] else None
        if not self.distributions.writes(recipe["train"]["distribution"]):
            path = None  # the other processes train alongside; the first one writes
        if path is not None:
            check_run_folder(path, overwrite=recipe["save"]["overwrite"])
        run = self.build(recipe)
        if start_from is not None:
            start_from(run)
        data = data if data is not None else self.load_data(recipe)
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
            atomic_write(path / "recipe.toml", recipe.to_toml())
            run.path = path
        self.fit(run, data)
        if path is not None:
            self.save_run(run)
        self.call("finetunekit_run_end", run=run)
        return run

    def resume(self, run_dir: str | Path, *, data: Data | None = None) -> Run:
        """Continue an interrupted run from the newest checkpoint in its folder.

        On the CPU with a fixed seed the final weights are bit-identical to those of a
        run that was never interrupted, also across a stage boundary.
        """
        run_dir = Path(run_dir)
        found = list_checkpoints(run_dir)
        if not found:
            raise PersistenceError(
                f"No checkpoint in '{run_dir / CHECKPOINT_DIR}'. Resume needs a run folder "
                "written by 'finetunekit run' with save.keep_checkpoints > 0."
            )
        checkpoint = read_checkpoint(found[-1])
        recipe = Recipe.from_string(checkpoint.recipe, source=str(checkpoint.path))
        run = self.build(recipe)
        writes = self.distributions.writes(recipe["train"]["distribution"])
        run.path = run_dir if writes else None
        self.fit(run, data if data is not None else self.load_data(recipe), resume=checkpoint)
        if writes:
            self.save_run(run)
        self.call("finetunekit_run_end", run=run)
        return run

    def retrain(self, model_path: str | Path, *, recipe: Recipe | None = None,
                overrides: Iterable[str] | dict[str, Any] = (), data: Data | None = None,
                safe_mode: bool = True) -> Run:
        """Load a saved model and train it further, keeping or changing the strategy.

        Args:
            model_path: a model file (keras, h5, checkpoint, weights) or a run folder.
            recipe: :class:`~finetunekit.Recipe` or None. None reads ``recipe.toml``
                beside the model (a run folder).
            overrides: ``section.key=value`` changes: new data, strategy, epochs,
                ``save.path`` for the new run.
            data: :class:`~finetunekit.Data` or None, instead of ``[data]``.
            safe_mode: bool. Refuse models that carry Python code.
        """
        file, fmt = self._locate(Path(model_path))
        if not fmt.trainable:
            raise PersistenceError(
                f"'{file}' is a {fmt.name} export; Keras 3 cannot train a model loaded from "
                "it. Retrain from the run's model.keras or a checkpoint (format 'keras' or "
                "'checkpoint')."
            )
        source = recipe
        recipe = (recipe or self._recipe_beside(file)).with_overrides(overrides)
        changes: dict[str, Any] = {"backbone.weights": "none"}  # the weights come from the file
        target = recipe["save"]["path"]
        if target and Path(target).resolve() == file.parent.resolve():
            changes["save.path"] = f"{file.parent}-retrained"  # never over the source run
        recipe = recipe.with_overrides(changes)

        def start_from(run: Run) -> None:
            # the saved model as it was trained (its own recipe), its weights into the new
            loaded = self.load_model(file, format=fmt.name, safe_mode=safe_mode, recipe=source)
            copy_weights(loaded, run.model, file)

        return self._run(recipe, data=data, save=True, start_from=start_from)

    # -- persistence ---------------------------------------------------------

    def save_model(self, model: Any, path: str | Path, format: str = "keras", *,
                   run: Run | None = None) -> Path:
        """Write `model` to `path` in `format`, atomically (temporary name, then rename)."""
        fmt = self.catalogue.get("format", format, key="save.format")
        path = Path(path)
        if not path.name.endswith(fmt.suffix):
            raise PersistenceError(
                f"Format '{fmt.name}' writes '{fmt.suffix}' files. Received path '{path}'. "
                f"Use a path ending in '{fmt.suffix}'."
            )
        return atomic_save(path, fmt.suffix, lambda tmp: self.call(
            "finetunekit_save_model", format=fmt, model=model, path=tmp, run=run))

    def load_model(self, path: str | Path, *, format: str | None = None, safe_mode: bool = True,
                   recipe: Recipe | None = None) -> Any:
        """Load a model saved by :meth:`save_model`, or a run folder's model.

        Args:
            path: a model file, or a run folder holding ``model.<suffix>``.
            format: str or None. Format name; None picks it from the file name.
            safe_mode: bool. Refuse models that carry Python code (lambdas).
            recipe: :class:`~finetunekit.Recipe` or None. For formats that hold weights
                but no architecture; None reads ``recipe.toml`` beside the file.
        """
        file, fmt = self._locate(Path(path), format)

        def template(stage: int | None = None, steps_per_epoch: int | None = None,
                     own_recipe: Recipe | None = None):
            run = self.build(own_recipe or recipe or self._recipe_beside(file))
            if stage is not None:
                self.compile_stage(run, stage, steps_per_epoch)
            return run.model

        model = self.call("finetunekit_load_model", format=fmt, path=file, safe_mode=safe_mode,
                          template=template)
        return require_result(self.pm, "finetunekit_load_model", model,
                              lambda m: isinstance(m, keras.Model), "a keras.Model")

    def _locate(self, path: Path, format: str | None = None) -> tuple[Path, Any]:
        """The model file `path` means (a run folder's model) and its format."""
        formats = [self.catalogue.get("format", n) for n in self.catalogue.names("format")]
        if path.is_dir() and not any(path.name.endswith(f.suffix) for f in formats):
            inside = [path / f"model{f.suffix}" for f in formats if (path / f"model{f.suffix}").exists()]
            if not inside:
                raise PersistenceError(
                    f"'{path}' is a folder without a saved model (model.keras, ...). Give a "
                    "model file or a run folder written by 'finetunekit run'."
                )
            path = inside[0]
        if not path.exists():
            raise PersistenceError(f"No such model file: '{path}'.")
        if format is not None:
            return path, self.catalogue.get("format", format, key="format")
        matches = [f for f in formats if path.name.endswith(f.suffix)]
        if not matches:
            raise PersistenceError(
                f"Cannot tell the format of '{path}' from its name. Known suffixes: "
                f"{', '.join(sorted(f.suffix for f in formats))}. Pass the format."
            )
        return path, max(matches, key=lambda f: len(f.suffix))

    @staticmethod
    def _recipe_beside(file: Path) -> Recipe:
        beside = file.parent / "recipe.toml"
        if not beside.is_file():
            raise PersistenceError(
                f"'{file}' needs its recipe, and there is no recipe.toml beside it. Pass the "
                "recipe it was trained with (--recipe FILE, or recipe=...)."
            )
        return Recipe.from_toml(beside)

    def save_run(self, run: Run) -> Path:
        """Write the run folder: the model, the recipe as run, history and plan."""
        if run.path is None:
            raise PersistenceError("This run has no save.path; set one to save it.")
        fmt, _ = self.select(run.recipe, "save")
        run.path.mkdir(parents=True, exist_ok=True)
        self.save_model(run.model, run.path / f"model{fmt.suffix}", fmt.name, run=run)
        atomic_write(run.path / "recipe.toml", run.recipe.to_toml())
        atomic_write(run.path / "history.json", json.dumps(run.history, indent=2))
        atomic_write(run.path / "history.csv", history_csv(run.history))
        atomic_write(run.path / "plan.json", json.dumps(
            {"stages": [s.to_dict() for s in run.plan.stages], "class_names": run.class_names},
            indent=2))
        return run.path


