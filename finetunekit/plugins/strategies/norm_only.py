"""``norm_only``: train only the normalisation layers' scale and shift, and the head.

Frankle, Schwab & Morcos ("Training BatchNorm and Only BatchNorm", ICLR 2021) show how
much a network can adapt through its normalisation parameters alone; for transfer, tuning
just those is a cheap, strong baseline between a linear probe and full fine-tuning
(cf. "TinyTL", Cai et al. 2020, which also keeps the kernels frozen).

The BatchNorm statistics follow ``train_bn``: with ``false`` (the default) each layer
stays in inference mode, normalising with its moving statistics and keeping them, while
its gamma and beta train; with ``true`` it normalises with batch statistics and updates
the moving averages as well. LayerNormalization and GroupNormalization parameters train
in both cases (they keep no statistics).

A composite top-level layer (a transformer block of a KerasHub ViT) trains the gamma and
beta of the normalisation layers inside it (:func:`is_nested_norm_parameter`).
"""

from __future__ import annotations

from finetunekit.core.components import Plan, PlanContext, Stage, Strategy
from finetunekit.core.errors import RecipeError
from finetunekit.plugins.strategies.freezing import is_norm_parameter, last_blocks_or_all
from finetunekit.core.params import Param
from finetunekit.core.manager import hookimpl


def is_nested_norm_parameter(layer, variable) -> bool:
    """A variable filter: gamma and beta of `layer` if it is a normalisation layer, or of
    a normalisation layer nested inside it."""
    inner = [layer, *layer._flatten_layers(include_self=False, recursive=True)]
    return any(is_norm_parameter(sub, variable) and any(v is variable for v in sub.weights)
               for sub in inner)


def plan_norm_only(context: PlanContext, unfreeze_blocks: int | None = None) -> Plan:
    """One stage: gamma and beta of every normalisation layer of the last
    `unfreeze_blocks` blocks (all if None), and the head."""
    trainable = last_blocks_or_all(context.blocks, unfreeze_blocks)
    scope = set(trainable)
    if not any(is_nested_norm_parameter(layer, variable) for layer in context.base.layers
               if layer.name in scope for variable in layer.weights):
        raise RecipeError(
            f"Strategy 'norm_only' trains normalisation layers, and the layers it may train "
            f"in base '{context.base.name}' have none (unfreeze_blocks={unfreeze_blocks}). "
            "Use a base with BatchNorm or LayerNorm (ResNet, EfficientNet, ConvNeXt, ...), "
            "or 'bitfit' for a similarly small set of parameters."
        )
    return Plan((Stage("norm_only", context.epochs, frozenset(trainable), context.learning_rate,
                       train_bn=context.train_bn, variables=is_nested_norm_parameter),))


@hookimpl
def finetunekit_register_strategies(register):
    register(Strategy(
        name="norm_only", plan=plan_norm_only,
        params={"unfreeze_blocks": Param(int, None, nullable=True, min=1,
                                         help="train the norm layers of the last N blocks only; omit for all")},
        description="Train only normalisation gamma/beta, and the head (statistics per train_bn).",
    ))
