"""``l2sp``: fine-tune, pulling the base back toward its starting weights.

L2-SP (Li, Grandvalet & Davoine, "Explicit Inductive Bias for Transfer Learning with
Convolutional Networks", ICML 2018) replaces weight decay, which pulls weights toward
zero and so away from what pretraining learned, with a pull toward the pretrained
weights ``w0``. The loss gains

    alpha / 2 * ||w - w0||^2   over the base's trainable variables, and
    beta / 2 * ||w||^2         over the head's (new, so plain L2).

Each penalty is a Keras variable regularizer (``variable.regularizer``): Keras adds
``regularizer(variable)`` to the loss for every trainable variable, on every backend.
``w0`` is the base's weights when training starts: taken when the plan is made, and
taken again at ``finetunekit_run_start`` so that a retrained model (its weights loaded
after the plan) is pulled toward the loaded weights, not the ones it was built with.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from finetunekit.core.components import Plan, PlanContext, Stage, Strategy
from finetunekit.plugins.strategies.freezing import last_blocks_or_all
from finetunekit.core.params import Param
from finetunekit.core.manager import hookimpl


class AnchorPenalty:
    """``strength / 2 * ||x - anchor||^2`` (``||x||^2`` without an anchor), as a Keras
    variable regularizer.

    Args:
        strength: float. ``alpha`` or ``beta``.
        anchor: array or None. The starting value to pull toward; None pulls toward zero.
        previous: callable or None. A regularizer the variable had already; added.
    """

    def __init__(self, strength: float, anchor: Any = None, previous: Any = None):
        self.strength = float(strength)
        self.previous = previous
        self.anchor = None
        if anchor is not None:
            self.set_anchor(anchor)

    def set_anchor(self, value: Any) -> None:
        """Pull toward `value` from now on (a copy: later training does not move it)."""
        # a backend tensor, not a numpy array, so a compiled train step reads it as an
        # input rather than baking megabytes of constants into the graph
        self.anchor = ops.convert_to_tensor(keras.ops.convert_to_numpy(value))

    def __call__(self, x: Any) -> Any:
        delta = x if self.anchor is None else x - ops.cast(self.anchor, x.dtype)
        penalty = 0.5 * self.strength * ops.sum(ops.square(delta))
        return penalty if self.previous is None else penalty + self.previous(x)


def attach(variables: Any, strength: float, *, anchored: bool) -> None:
    """Give each variable an :class:`AnchorPenalty` (anchored at its current value if
    `anchored`), keeping any regularizer it had."""
    for variable in variables:
        anchor = variable if anchored else None
        variable.regularizer = AnchorPenalty(strength, anchor, previous=variable.regularizer)


def plan_l2sp(context: PlanContext, alpha: float = 0.01, beta: float = 0.01,
              unfreeze_blocks: int | None = None) -> Plan:
    """One stage training the last `unfreeze_blocks` blocks (all if None) and the head,
    with the L2-SP penalties attached to their variables."""
    trainable = last_blocks_or_all(context.blocks, unfreeze_blocks)
    names = set(trainable)
    # every variable that can train (not BatchNorm statistics); Keras counts a penalty
    # only while its variable is trainable, so frozen BatchNorm adds nothing
    base_vars = [v for layer in context.base.layers if layer.name in names
                 for v in layer.weights if v.trainable]
    attach(base_vars, alpha, anchored=True)
    if context.head is not None:
        attach(context.head.trainable_weights, beta, anchored=False)
    return Plan((Stage("l2sp", context.epochs, frozenset(trainable), context.learning_rate,
                       train_bn=context.train_bn),))


@hookimpl
def finetunekit_run_start(run):
    """Re-anchor every L2-SP penalty at the weights training starts from."""
    for variable in run.base.weights:
        if isinstance(variable.regularizer, AnchorPenalty) and variable.regularizer.anchor is not None:
            variable.regularizer.set_anchor(variable)


@hookimpl
def finetunekit_register_strategies(register):
    register(Strategy(
        name="l2sp", plan=plan_l2sp,
        params={
            "alpha": Param(float, 0.01, min=0.0, help="strength of alpha/2 ||w - w0||^2 on the base"),
            "beta": Param(float, 0.01, min=0.0, help="strength of beta/2 ||w||^2 on the head"),
            "unfreeze_blocks": Param(int, None, nullable=True, min=1,
                                     help="train the last N blocks only; omit for the whole base"),
        },
        description="Full fine-tuning pulled toward the pretrained weights (L2-SP, Li et al. 2018).",
    ))
