"""Default implementations of the action hooks: call the selected component's function.

Every hook here is ``trylast``, so any plugin can answer first (return a non-None result)
or wrap the result (``@hookimpl(wrapper=True)``). Components registered by third-party
plugins go through exactly these functions, like the built-ins.
"""

from __future__ import annotations

from pathlib import Path

from finetunekit.core.manager import hookimpl
from finetunekit.core.weights import load_weights_file


@hookimpl(trylast=True)
def finetunekit_load_backbone(backbone, input_shape, weights, params):
    if isinstance(weights, Path):
        base = backbone.build(input_shape, None, **params)
        load_weights_file(base, weights, backbone.name)
        return base
    return backbone.build(input_shape, weights, **params)


@hookimpl(trylast=True)
def finetunekit_plan_strategy(strategy, context, params):
    return strategy.plan(context, **params)


@hookimpl(trylast=True)
def finetunekit_build_head(head, feature_shape, params):
    return head.build(feature_shape, **params)


@hookimpl(trylast=True)
def finetunekit_build_optimizer(optimizer, learning_rate, weight_decay, params, stage):
    return optimizer.build(learning_rate, weight_decay, **params)


@hookimpl(trylast=True)
def finetunekit_save_model(format, model, path, run):
    format.save(model, path, run)
    return path


@hookimpl(trylast=True)
def finetunekit_load_model(format, path, safe_mode, template):
    return format.load(path, safe_mode, template)


@hookimpl(trylast=True)
def finetunekit_load_data(source, context, params):
    return source.load(context, **params)


@hookimpl(trylast=True)
def finetunekit_build_augmentation(augmentation, input_shape, params):
    return augmentation.build(input_shape, **params)
