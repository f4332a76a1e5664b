"""The three basic strategies: feature extraction, partial and full fine-tuning (the seed's).

Each is a few lines over :mod:`finetunekit.plugins.strategies.freezing`. Registered through the
package, as plugin ``finetunekit.plugins.strategies``.
"""

from __future__ import annotations

from finetunekit.core.components import Plan, PlanContext, Stage, Strategy
from finetunekit.core.errors import RecipeError
from finetunekit.plugins.strategies.freezing import last_blocks, layers_from
from finetunekit.core.params import Param
from finetunekit.core.manager import hookimpl


def _single(name: str, context: PlanContext, trainable) -> Plan:
    return Plan((Stage(name=name, epochs=context.epochs, trainable=frozenset(trainable),
                       learning_rate=context.learning_rate, train_bn=context.train_bn),))


def plan_feature_extraction(context: PlanContext) -> Plan:
    """The whole base frozen; only the head trains."""
    return _single("feature_extraction", context, ())


DEFAULT_BLOCKS = 1
"""Blocks ``partial`` trains when the recipe gives neither key: the last one, the block
nearest the head, the usual first thing to unfreeze (docs/strategies.md)."""


def plan_partial(context: PlanContext, unfreeze_from=None, unfreeze_blocks=None) -> Plan:
    """The base frozen up to a layer (index or name) or all but the last N blocks; with
    neither key, all but the last block."""
    if unfreeze_from is not None and unfreeze_blocks is not None:
        raise RecipeError(
            "Strategy 'partial' takes at most one of 'strategy.unfreeze_from' (a layer index "
            "or name, as in vgg_base.layers[15:]) or 'strategy.unfreeze_blocks' (the last N "
            f"blocks). Received: unfreeze_from={unfreeze_from!r}, "
            f"unfreeze_blocks={unfreeze_blocks!r}. Drop one."
        )
    if unfreeze_from is None and unfreeze_blocks is None:
        unfreeze_blocks = DEFAULT_BLOCKS
    if unfreeze_from is not None:
        trainable = layers_from(context.base, unfreeze_from)
    else:
        trainable = last_blocks(context.blocks, unfreeze_blocks)
    return _single("partial", context, trainable)


def plan_full(context: PlanContext) -> Plan:
    """Every layer of the base trains."""
    return _single("full", context, context.layer_names)


@hookimpl
def finetunekit_register_strategies(register):
    register(Strategy(
        name="feature_extraction", plan=plan_feature_extraction,
        description="Freeze the whole base; train the head only.",
    ))
    register(Strategy(
        name="partial", plan=plan_partial,
        params={
            "unfreeze_from": Param((int, str), None, nullable=True,
                                   help="first trainable base layer: index or name"),
            "unfreeze_blocks": Param(int, None, nullable=True, min=1,
                                     help="train the last N blocks of the base (default: 1 "
                                          "when unfreeze_from is not set either)"),
        },
        description="Train the base from a layer (or the last N blocks, default the last "
                    "one) on, and the head.",
    ))
    register(Strategy(
        name="full", plan=plan_full,
        description="Train every layer of the base and the head.",
    ))
