"""Model assembly: a recipe's components put together into a :class:`Run`, one stage
composed and compiled at a time.

The model is ``uint8 image -> [augment] -> preprocess -> base -> head``. Every component
is used through :meth:`Catalogue.call <finetunekit.core.catalogue.Catalogue.call>`, so a
failure names the plugin that registered it. The checks here are the ones no single
component can make: the input against the backbone's minimum size, the plan's layers
against the base, the head's output dtype against the precision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from finetunekit.core import schedules, stages
from finetunekit.core.catalogue import Catalogue, takes_keyword
from finetunekit.core.components import BuiltHead, Plan, PlanContext, Steps
from finetunekit.core.errors import PluginError, RecipeError
from finetunekit.core.mixing import LabelMixing
from finetunekit.core.precision import output_dtype
from finetunekit.core.recipe import Recipe
from finetunekit.core.training import Run, fresh_metric
from finetunekit.core.weights import load_weights_file


def weights_source(recipe: Recipe) -> str | Path | None:
    """``backbone.weights`` as ``"imagenet"``, None (random) or the path of a file."""
    value = recipe["backbone"]["weights"]
    if value.lower() in ("none", "imagenet"):
        return None if value.lower() == "none" else "imagenet"
    path = Path(value).expanduser()
    if not path.is_file():
        raise RecipeError(
            f"'backbone.weights' must be \"imagenet\", \"none\" or the path of a weights "
            f"file. Received: backbone.weights={value!r}, and no such file exists.")
    return path


def assemble(catalogue: Catalogue, recipe: Recipe) -> Run:
    """Build every part a recipe names and compose the model for its first stage."""
    keras.utils.set_random_seed(recipe["train"]["seed"])
    backbone, backbone_params = catalogue.select(recipe, "backbone")
    input_shape = tuple(recipe["backbone"]["input_shape"])
    if min(input_shape[:2]) < backbone.min_size:
        raise RecipeError(
            f"Backbone '{backbone.name}' needs inputs of at least {backbone.min_size}x"
            f"{backbone.min_size}. Received: backbone.input_shape={list(input_shape)}. "
            "Raise the height and width (images are resized on load).")
    weights = weights_source(recipe)
    base = catalogue.call("backbone", backbone, "build", input_shape,
                          None if isinstance(weights, Path) else weights, params=backbone_params,
                          expect=(lambda b: isinstance(b, keras.Model), "a keras.Model"))
    if isinstance(weights, Path):  # for every backbone alike, a plugin's too
        load_weights_file(base, weights, backbone.name)
    names = [layer.name for layer in base.layers]
    blocks = ([list(block) for block in catalogue.call("backbone", backbone, "blocks", base)]
              if backbone.blocks else [[name] for name in names])

    head, head_params = catalogue.select(recipe, "head")
    feature_shape = tuple(base.output_shape[1:])
    built_head = catalogue.call("head", head, "build", feature_shape, params=head_params,
                                expect=(lambda h: isinstance(h, BuiltHead), "a finetunekit.BuiltHead"))
    built_head.layer.build((None, *feature_shape))

    strategy, strategy_params = catalogue.select(recipe, "strategy")
    context = PlanContext(base=base, blocks=blocks, epochs=recipe["train"]["epochs"],
                          learning_rate=recipe["optimizer"]["learning_rate"],
                          train_bn=recipe["strategy"]["train_bn"], head=built_head.layer)
    plan = catalogue.call("strategy", strategy, "plan", context, params=strategy_params,
                          expect=(lambda p: isinstance(p, Plan), "a finetunekit.Plan"))
    for stage in plan.stages:
        unknown = sorted(set(stage.trainable) - set(names))
        if unknown:
            plugin = catalogue.plugin_of("strategy", strategy.name)
            raise PluginError(
                f"Strategy '{strategy.name}' (plugin '{plugin}') planned stage '{stage.name}' "
                f"with layers the base does not have: {unknown[:5]}.",
                plugin=plugin, hook="strategy.plan")

    preprocess = (catalogue.call("backbone", backbone, "preprocess") if backbone.preprocess
                  else keras.layers.Identity(name="preprocess"))
    augmentation, augment_params = catalogue.select(recipe, "augment")
    augment = catalogue.call("augmentation", augmentation, "build", input_shape,
                             params=augment_params)
    run = Run(recipe=recipe, base=base, blocks=blocks, head=built_head, plan=plan, model=None,
              preprocess=preprocess, augment=augment, variable_flags=stages.variable_flags(base))
    compose(run, 0)
    if augmentation.mix is not None:
        # the soft labels' width is the model's output width, known once it is composed
        def mix(*args: Any) -> Any:
            return catalogue.call("augmentation", augmentation, "mix", *args, params=augment_params)
        run.mix = LabelMixing.of(augmentation.name, mix, built_head, int(run.model.output_shape[-1]))
        run.head = run.mix.head
    if output_dtype(run.model) != "float32":
        plugin = catalogue.plugin_of("head", head.name)
        raise PluginError(
            f"Head '{head.name}' (plugin '{plugin}') outputs {output_dtype(run.model)} under "
            f"train.precision = \"{recipe['train']['precision']}\"; the loss needs float32. "
            "Give the head's last layer dtype=\"float32\".", plugin=plugin, hook="head.build")
    return run


def compose(run: Run, index: int) -> None:
    """Set trainable flags for stage `index` and compose the model for it.

    The base is called with ``training=False`` when the stage freezes all of it, so that
    its dropout and BatchNorm layers behave as at inference.
    """
    stage = run.plan.stages[index]
    stages.apply_trainable(run.base, stage.trainable, train_bn=stage.train_bn,
                           variables=stage.variables, original=run.variable_flags)
    inputs = keras.Input(shape=tuple(run.recipe["backbone"]["input_shape"]), dtype="uint8",
                         name="image")
    pixels = run.augment(inputs) if run.augment is not None else inputs
    features = run.base(run.preprocess(pixels), training=False if not stage.trainable else None)
    run.model = keras.Model(inputs, run.head.layer(features), name="finetunekit_model")
    run.stage_index = index


def compile_stage(catalogue: Catalogue, run: Run, index: int,
                  steps_per_epoch: int | None = None) -> None:
    """Compose stage `index` and compile it with a fresh optimizer: its schedule and
    per-layer learning rates. Keras 3 reads trainable flags at compile time, so every
    stage recompiles.

    The optimizer is the recipe's ``[optimizer]`` component, or ``run.optimizer`` when
    one was given from Python (:func:`finetunekit.core.schedules.python_optimizer`).
    With ``optimizer.carry_state``, the previous stage's step count and moments are
    copied into it for the variables that train in both stages.
    """
    recipe, stage = run.recipe, run.plan.stages[index]
    section = recipe["optimizer"]
    previous = getattr(run.model, "optimizer", None) if section["carry_state"] else None
    compose(run, index)
    learning_rate = schedules.stage_learning_rate(section, stage.learning_rate, stage.epochs,
                                                  steps_per_epoch)
    if run.optimizer is not None:
        opt = schedules.python_optimizer(run.optimizer, stage, learning_rate, steps_per_epoch)
        run.optimizers_used = [r for r in run.optimizers_used if r["index"] != index] + [
            {"index": index, **schedules.optimizer_record(stage, opt)}]
        schedules.write_optimizer_record(run)  # now: an interrupted run keeps the record
    else:
        optimizer, optimizer_params = catalogue.select(recipe, "optimizer")
        if takes_keyword(optimizer.build, "steps"):
            optimizer_params = {**optimizer_params, "steps": Steps(
                per_epoch=steps_per_epoch, stage=stage,
                total=None if steps_per_epoch is None else steps_per_epoch * stage.epochs)}
        opt = catalogue.call(
            "optimizer", optimizer, "build", learning_rate, section["weight_decay"],
            params=optimizer_params,
            expect=(lambda o: isinstance(o, keras.optimizers.Optimizer),
                    "a keras.optimizers.Optimizer"))
    if stage.lr_scales:
        by_path = {variable.path: stage.lr_scales[layer.name]
                   for layer in run.base.layers if layer.name in stage.lr_scales
                   for variable in layer.weights}
        stages.scale_learning_rates(opt, lambda variable: by_path.get(variable.path, 1.0))
    # fresh metric objects per stage: a metric compiled into the previous stage's model
    # keeps counting there (validation batches included) and would leak into this one
    run.model.compile(optimizer=opt, loss=run.head.loss,
                      metrics=[fresh_metric(m) for m in run.head.metrics])
    if previous is not None:
        schedules.carry_state(previous, opt, run.model.trainable_variables)
    run.stage_callbacks = schedules.stage_callbacks(section)


def describe(run: Run) -> dict[str, Any]:
    """Layers, parameter counts and the plan of a built run, each stage composed in turn
    (the model is left composed for stage 0)."""
    layers = []
    for layer in run.model.layers:
        if layer is run.base or layer is run.head.layer:
            part = "base" if layer is run.base else "head"
            layers += [layer_row(sub, part) for sub in getattr(layer, "layers", [layer])]
        elif layer is run.preprocess:
            layers.append(layer_row(layer, "preprocess"))
        elif layer is run.augment:
            layers.append(layer_row(layer, "augment"))
    plan = []
    for index, stage in enumerate(run.plan.stages):
        compose(run, index)
        plan.append({**stage.to_dict(), "trained_layers": run.trained_layers(index),
                     "trainable_params": stages.trainable_param_count(run.model)})
    compose(run, 0)
    total = int(run.model.count_params())
    trainable = stages.trainable_param_count(run.model)
    return {
        "backbone": run.recipe["backbone"]["name"],
        "input_shape": run.recipe["backbone"]["input_shape"],
        "strategy": run.recipe["strategy"]["name"],
        "layers": layers,
        "total_params": total,
        "trainable_params": trainable,
        "non_trainable_params": total - trainable,
        "blocks": [list(block) for block in run.blocks],
        "plan": plan,
    }


def layer_row(layer: Any, part: str) -> dict[str, Any]:
    """One layer of :func:`describe`'s table."""
    return {
        "name": layer.name,
        "part": part,
        "trainable": any(w.trainable for w in layer.weights),
        "params": int(layer.count_params()) if layer.weights else 0,
    }
