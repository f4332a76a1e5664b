"""``discriminative``: a learning rate per block, lowest at the stem, highest at the head.

Discriminative fine-tuning (Howard & Ruder, ULMFiT, ACL 2018), as fastai's
``fit(lr_max=slice(lo, hi))`` applies it: the parameter groups (here the base's blocks,
then the head) get rates equally spaced in log scale from ``lo`` for the first block to
``hi`` for the head. Early blocks hold general features worth keeping; later ones need
more change. The same schedule written as a decay (each block ``decay`` times the one
above it) is layer-wise learning-rate decay (ELECTRA, BEiT).

The rates are true per-variable learning rates, applied inside the optimizer's update
(:mod:`finetunekit.plugins.strategies.learning_rates`): scaling gradients instead would change nothing
for Adam or RMSprop, which divide by the gradient's own scale.
"""

from __future__ import annotations

from finetunekit.core.components import Plan, PlanContext, Stage, Strategy
from finetunekit.core.errors import RecipeError
from finetunekit.plugins.strategies.freezing import block_index, last_blocks_or_all
from finetunekit.plugins.strategies.learning_rates import check_factor, log_spaced
from finetunekit.core.params import Param
from finetunekit.core.manager import hookimpl

LR_MULT = 100
"""fastai ``fine_tune``'s default spread: ``slice(lr / 100, lr)``."""


def block_rates(context: PlanContext, lr_min: float | None = None,
                decay: float | None = None) -> list[float]:
    """The learning rate of each block of the base, stem first; the head gets
    ``context.learning_rate``."""
    groups = len(context.blocks) + 1  # the blocks, then the head
    high = context.learning_rate
    if decay is not None:
        return [high * decay ** (groups - 1 - i) for i in range(groups - 1)]
    low = high / LR_MULT if lr_min is None else lr_min
    if low > high:
        raise RecipeError(
            f"'strategy.lr_min' is the first block's rate and must not exceed the head's "
            f"(optimizer.learning_rate={high}). Received: strategy.lr_min={lr_min}."
        )
    return log_spaced(low, high, groups)[:-1]


def plan_discriminative(context: PlanContext, lr_min: float | None = None,
                        decay: float | None = None, unfreeze_blocks: int | None = None) -> Plan:
    """One stage training the last `unfreeze_blocks` blocks (all if None) and the head,
    each block at its own rate (see :func:`block_rates`)."""
    if lr_min is not None and decay is not None:
        raise RecipeError(
            "Strategy 'discriminative' takes 'strategy.lr_min' (fastai slice(lr_min, "
            "learning_rate)) or 'strategy.decay' (per-block factor), not both. Received: "
            f"strategy.lr_min={lr_min}, strategy.decay={decay}."
        )
    rates = block_rates(context, lr_min, decay)
    trainable = last_blocks_or_all(context.blocks, unfreeze_blocks)
    index = block_index(context.blocks)
    scales = {name: rates[index[name]] / context.learning_rate for name in trainable}
    return Plan((Stage("discriminative", context.epochs, frozenset(trainable),
                       context.learning_rate, train_bn=context.train_bn, lr_scales=scales),))


@hookimpl
def finetunekit_register_strategies(register):
    register(Strategy(
        name="discriminative", plan=plan_discriminative,
        params={
            "lr_min": Param(float, None, nullable=True, check=lambda v: None if v > 0 else "must be > 0.",
                            help="rate of the first block, log-spaced up to the head's "
                                 "(fastai slice(lr_min, lr)); default learning_rate / 100"),
            "decay": Param(float, None, nullable=True, check=check_factor,
                           help="instead of lr_min: each block trains at decay x the rate of the one above"),
            "unfreeze_blocks": Param(int, None, nullable=True, min=1,
                                     help="train only the last N blocks; omit for the whole base"),
        },
        description="Per-block learning rates, log-spaced from the stem to the head (fastai slice).",
    ))
