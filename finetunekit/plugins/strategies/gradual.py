"""``gradual``: unfreeze the base one block at a time, last block first.

Gradual unfreezing is ULMFiT's (Howard & Ruder, "Universal Language Model Fine-tuning for
Text Classification", ACL 2018): first train only the new head, then unfreeze the last
block, then the one below it, and so on, so that each block starts training once the
layers above it are no longer random. The learning rate of the base follows PyTorch
Lightning's ``BackboneFinetuning`` callback: when the base first unfreezes it trains at
``lr_ratio`` times the head's rate, and that rate grows by ``lr_growth`` every epoch until
it reaches the head's (Lightning's ``should_align``).

Keras reads trainable flags only when it compiles, so the plan holds one stage per
change: a stage per epoch while the rate grows, merged where nothing changes.
"""

from __future__ import annotations

from finetunekit.core.components import Plan, PlanContext, Stage, Strategy
from finetunekit.core.errors import RecipeError
from finetunekit.plugins.strategies.freezing import last_blocks
from finetunekit.plugins.strategies.learning_rates import check_factor
from finetunekit.core.params import Param
from finetunekit.core.manager import hookimpl


def plan_gradual(context: PlanContext, every: int = 1, max_blocks: int | None = None,
                 lr_ratio: float = 0.1, lr_growth: float = 1.5) -> Plan:
    """For each epoch ``e`` (from 0), train the last ``min(max_blocks, e // every)``
    blocks, at ``min(1, lr_ratio * lr_growth ** (e - every))`` times the head's rate."""
    limit = len(context.blocks) if max_blocks is None else max_blocks
    if not 1 <= limit <= len(context.blocks):
        raise RecipeError(
            f"'strategy.max_blocks' must be between 1 and {len(context.blocks)} (this base has "
            f"{len(context.blocks)} blocks). Received: strategy.max_blocks={max_blocks}."
        )
    if context.epochs <= every:
        raise RecipeError(
            f"Strategy 'gradual' unfreezes its first block after strategy.every={every} "
            f"epochs, but train.epochs={context.epochs}: the base would never train. Raise "
            "train.epochs above strategy.every, or lower strategy.every."
        )
    runs: list[list] = []  # [(blocks, scale), first epoch, epochs]
    for epoch in range(context.epochs):
        blocks = min(limit, epoch // every)
        scale = min(1.0, lr_ratio * lr_growth ** (epoch - every)) if blocks else 1.0
        if runs and runs[-1][0] == (blocks, scale):
            runs[-1][2] += 1
        else:
            runs.append([(blocks, scale), epoch, 1])
    stages = []
    for (blocks, scale), first, epochs in runs:
        trainable = last_blocks(context.blocks, blocks, key="strategy.max_blocks") if blocks else []
        what = f"last_{blocks}_blocks" if blocks else "head"
        stages.append(Stage(
            f"e{first + 1}_{what}", epochs, frozenset(trainable), context.learning_rate,
            train_bn=context.train_bn,
            lr_scales={name: scale for name in trainable} if scale != 1.0 else {},
        ))
    return Plan(tuple(stages))


@hookimpl
def finetunekit_register_strategies(register):
    register(Strategy(
        name="gradual", plan=plan_gradual,
        params={
            "every": Param(int, 1, min=1,
                           help="epochs between unfreezing one more block (the head trains alone first)"),
            "max_blocks": Param(int, None, nullable=True, min=1,
                                help="stop after this many blocks; omit to unfreeze them all"),
            "lr_ratio": Param(float, 0.1, check=check_factor,
                              help="base learning rate when it unfreezes, as a fraction of the head's"),
            "lr_growth": Param(float, 1.5, min=1.0,
                               help="the base's rate is multiplied by this every epoch, up to the head's"),
        },
        description="Unfreeze one more block every K epochs, last first, at a growing rate (ULMFiT).",
    ))
