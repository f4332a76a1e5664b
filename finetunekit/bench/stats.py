"""Paired statistics for the accuracy benchmark: runs are paired by seed (same labels,
same head initialisation, same batch order), so a strategy is compared with another by
their per-seed differences, not by two independent means.

A strategy *loses* to the best one only when the 95% t-interval of the paired
differences (best - strategy) lies above 0; the exact two-sided sign test is reported
beside it, as a check that needs no normality.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Paired:
    """The paired comparison of two strategies over the same seeds.

    Attributes:
        n: int. Seeds both have.
        mean_difference: float. Mean of (a - b) per seed.
        low: float. Lower end of the 95% t-interval of the mean difference.
        high: float. Upper end.
        wins: int. Seeds where a > b.
        losses: int. Seeds where a < b (ties count for neither).
        sign_p: float. Two-sided exact sign-test p-value (ties dropped).
    """

    n: int
    mean_difference: float
    low: float
    high: float
    wins: int
    losses: int
    sign_p: float

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies wholly on one side of 0."""
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, Any]:
        """Plain data, rounded for bench.json (no interval: None)."""
        return {k: ((round(v, 4) if math.isfinite(v) else None) if isinstance(v, float) else v)
                for k, v in asdict(self).items()}


def t_interval(differences: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided t-interval of the mean of `differences` (n - 1 degrees of freedom).

    With fewer than 2 values there is no interval: ``(nan, nan)``, which excludes
    nothing. All values equal: the mean itself (no spread observed).
    """
    from scipy.stats import t

    n = len(differences)
    mean = statistics.fmean(differences)
    if n < 2:
        return math.nan, math.nan
    half = t.ppf(0.5 + confidence / 2, n - 1) * statistics.stdev(differences) / math.sqrt(n)
    return float(mean - half), float(mean + half)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial sign test p-value; 1.0 when there is nothing to test."""
    from scipy.stats import binomtest

    if wins + losses == 0:
        return 1.0
    return float(binomtest(wins, wins + losses, 0.5).pvalue)


def paired(a: dict[int, float], b: dict[int, float]) -> Paired:
    """Compare `a` with `b`, each ``{seed: accuracy}``, over the seeds both have."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("A paired comparison needs seeds both sides ran. Received none in common.")
    differences = [a[s] - b[s] for s in seeds]
    low, high = t_interval(differences)
    wins = sum(d > 0 for d in differences)
    losses = sum(d < 0 for d in differences)
    return Paired(len(seeds), statistics.fmean(differences), low, high, wins, losses,
                  sign_test(wins, losses))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = list(values)
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def against_best(scores: dict[str, dict[int, float]]) -> dict[str, dict[str, Any]]:
    """Each strategy against the one with the highest mean.

    Args:
        scores: ``{strategy: {seed: accuracy}}`` for one backbone, label budget and metric.

    Returns:
        dict: per strategy, ``best`` (the best strategy's name), ``paired`` (best -
        strategy, as :meth:`Paired.to_dict`; None for the best itself) and ``loses``:
        True only when the interval lies above 0.
    """
    if not scores:
        return {}
    best = max(scores, key=lambda name: statistics.fmean(scores[name].values()))
    out: dict[str, dict[str, Any]] = {}
    for name, own in scores.items():
        if name == best:
            out[name] = {"best": best, "paired": None, "loses": False}
            continue
        comparison = paired(scores[best], own)
        out[name] = {"best": best, "paired": comparison.to_dict(),
                     "loses": bool(comparison.low > 0)}  # False for nan: one seed
    return out
