"""``bitfit``: train only the base's bias terms, and the head.

BitFit (Ben Zaken, Goldberg & Ravfogel, "BitFit: Simple Parameter-efficient Fine-tuning
for Transformer-based Masked Language-models", ACL 2022): updating the biases alone
(well under 1% of the parameters) comes close to full fine-tuning on small and medium
data, and leaves every kernel as pretrained. BatchNorm layers follow ``train_bn``: frozen
by default; with ``train_bn = true`` they train whole, statistics included.
"""

from __future__ import annotations

from finetunekit.core.components import Plan, PlanContext, Stage, Strategy
from finetunekit.core.errors import RecipeError
from finetunekit.plugins.strategies.freezing import is_bias, last_blocks_or_all
from finetunekit.core.params import Param
from finetunekit.core.manager import hookimpl


def plan_bitfit(context: PlanContext, unfreeze_blocks: int | None = None) -> Plan:
    """One stage: every bias of the last `unfreeze_blocks` blocks (all if None), and the head."""
    trainable = last_blocks_or_all(context.blocks, unfreeze_blocks)
    scope = set(trainable)
    if not any(is_bias(layer, variable) for layer in context.base.layers if layer.name in scope
               for variable in layer.weights):
        raise RecipeError(
            f"Strategy 'bitfit' trains bias terms, and the layers it may train in base "
            f"'{context.base.name}' have none (unfreeze_blocks={unfreeze_blocks}). Use "
            "'norm_only', 'lora' or 'partial'."
        )
    return Plan((Stage("bitfit", context.epochs, frozenset(trainable), context.learning_rate,
                       train_bn=context.train_bn, variables=is_bias),))


@hookimpl
def finetunekit_register_strategies(register):
    register(Strategy(
        name="bitfit", plan=plan_bitfit,
        params={"unfreeze_blocks": Param(int, None, nullable=True, min=1,
                                         help="train the biases of the last N blocks only; omit for all")},
        description="Train only the base's biases, and the head (BitFit, Ben Zaken et al. 2022).",
    ))
