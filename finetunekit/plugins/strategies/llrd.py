"""``llrd``: layer-wise learning-rate decay, the recipe for fine-tuning transformers.

ELECTRA (Clark et al., ICLR 2020) and BEiT (Bao et al., ICLR 2022) fine-tune every layer,
each at ``learning_rate * decay ** depth``, where depth counts blocks down from the top:
the head trains at the full rate, the last block at ``decay`` times it, the one below at
``decay ** 2``, ... and the stem (a ViT's patch and position embeddings) at
``decay ** blocks``. BEiT uses 0.65 for ViT-B (0.75 for ViT-L), ELECTRA 0.8; the
default here, 0.75, sits between.

The rates are true per-variable learning rates inside the optimizer's update, as for
``discriminative`` (whose ``decay`` key gives the same rates; ``llrd`` is the transformer
recipe by name, with its default). The papers also warm the rate up: give the optimizer a
schedule that does (docs/strategies.md); the per-layer factors multiply whatever rate the
schedule gives at each step.
"""

from __future__ import annotations

from finetunekit.core.components import Plan, PlanContext, Stage, Strategy
from finetunekit.core.manager import hookimpl
from finetunekit.core.params import Param
from finetunekit.plugins.strategies.freezing import block_index, last_blocks_or_all
from finetunekit.plugins.strategies.learning_rates import check_factor

DECAY = 0.75
"""Default per-block factor: between BEiT's 0.65 (ViT-B) and ELECTRA's 0.8."""


def depth_scales(blocks, decay: float) -> dict[str, float]:
    """Each layer's learning-rate factor: ``decay ** depth``, depth 1 for the last block."""
    index = block_index(blocks)
    return {name: decay ** (len(blocks) - i) for name, i in index.items()}


def plan_llrd(context: PlanContext, decay: float = DECAY,
              unfreeze_blocks: int | None = None) -> Plan:
    """One stage training the last `unfreeze_blocks` blocks (all if None) and the head,
    each block at ``learning_rate * decay ** depth``."""
    trainable = last_blocks_or_all(context.blocks, unfreeze_blocks)
    scales = depth_scales(context.blocks, decay)
    return Plan((Stage("llrd", context.epochs, frozenset(trainable), context.learning_rate,
                       train_bn=context.train_bn,
                       lr_scales={name: scales[name] for name in trainable}),))


@hookimpl
def finetunekit_register_strategies(register):
    register(Strategy(
        name="llrd", plan=plan_llrd,
        params={
            "decay": Param(float, DECAY, check=check_factor,
                           help="each block trains at decay x the rate of the block above; "
                                "the head at the full rate (BEiT 0.65, ELECTRA 0.8)"),
            "unfreeze_blocks": Param(int, None, nullable=True, min=1,
                                     help="train only the last N blocks; omit for the whole base"),
        },
        description="Layer-wise learning-rate decay from the head down (ELECTRA, BEiT): for transformers.",
    ))
