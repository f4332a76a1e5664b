"""Per-variable learning rates, inside the optimizer's update.

Scaling gradients is not a learning-rate change for Adam or RMSprop: they divide by a
running gradient scale, so a constant factor on the gradient cancels. The factor must
multiply the learning rate in the update itself. This wraps an optimizer instance's
``update_step`` so each variable's step uses ``learning_rate * factor``, on every
backend (Keras 3 calls ``update_step`` once per variable under TensorFlow and JAX).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def scale_learning_rates(optimizer: Any, factor_of: Callable[[Any], float]) -> Any:
    """Make `optimizer` use ``learning_rate * factor_of(variable)`` per variable.

    Args:
        optimizer: keras.optimizers.Optimizer, not yet built.
        factor_of: callable. Maps a trainable variable to its learning-rate factor.

    Returns:
        The same optimizer, changed in place.
    """
    if getattr(optimizer, "built", False):
        raise ValueError("scale_learning_rates needs an optimizer that is not built yet.")
    original_build = optimizer.build
    original_update = optimizer.update_step
    factors: list[float] = []

    def build(variables):
        original_build(variables)
        factors[:] = [float(factor_of(variable)) for variable in variables]

    def update_step(gradient, variable, learning_rate):
        factor = factors[optimizer._get_variable_index(variable)]
        if factor != 1.0:
            learning_rate = learning_rate * factor
        return original_update(gradient, variable, learning_rate)

    optimizer.build = build
    optimizer.update_step = update_step
    optimizer.learning_rate_factors = factors
    return optimizer


def check_factor(value: float) -> str | None:
    """A :class:`~finetunekit.Param` check: a learning-rate factor in (0, 1]."""
    return None if 0 < value <= 1 else "must be in (0, 1]: a fraction of the learning rate."


def log_spaced(low: float, high: float, n: int) -> list[float]:
    """`n` rates from `low` to `high`, equally spaced in log scale (fastai's ``even_mults``).

    ``n == 1`` gives ``[high]``.
    """
    if n == 1:
        return [high]
    step = (high / low) ** (1 / (n - 1))
    return [low * step**i for i in range(n - 1)] + [high]
