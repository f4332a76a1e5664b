"""Example finetunekit plugin: the ``last_conv_layers`` strategy.

Trains only the last N layers of the base that have weights (convolutions, dense or
BatchNorm layers), plus the head. Pooling, activation and other weightless layers are
skipped when counting, so ``n = 2`` on VGG16 means ``block5_conv2`` and ``block5_conv3``.

Written only against finetunekit's public API, as any third-party plugin would be.
"""

from finetunekit import Param, Plan, RecipeError, Stage, Strategy, hookimpl


def plan_last_conv_layers(context, n):
    """One stage that trains the last `n` weighted layers of the base."""
    weighted = [layer.name for layer in context.base.layers if layer.weights]
    if n > len(weighted):
        raise RecipeError(
            f"'strategy.n' must be between 1 and {len(weighted)} (base '{context.base.name}' "
            f"has {len(weighted)} layers with weights). Received: strategy.n={n}."
        )
    stage = Stage(
        name="last_conv_layers",
        epochs=context.epochs,
        trainable=frozenset(weighted[-n:]),
        learning_rate=context.learning_rate,
        train_bn=context.train_bn,
    )
    return Plan((stage,))


@hookimpl
def finetunekit_register_strategies(register):
    register(Strategy(
        name="last_conv_layers",
        plan=plan_last_conv_layers,
        params={"n": Param(int, 2, min=1, help="how many weighted base layers train, from the top")},
        description="Train the last N layers of the base that have weights, and the head.",
    ))
