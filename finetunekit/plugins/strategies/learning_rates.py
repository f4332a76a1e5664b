"""Learning-rate helpers for strategies: factor checks and log-spaced rates."""

from __future__ import annotations


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
