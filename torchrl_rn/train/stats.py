"""Statistics over seeds and episodes: mean and a t-based 95% confidence interval (standard library only).

``benchmarks/benchmark_stats.py`` loads this file directly, so the benchmark tables use the same numbers without
importing torch.
"""
from __future__ import annotations

import math
import statistics

__all__ = ["mean_ci95", "mean_std_ci95"]


def mean_ci95(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of a 95% Student-t interval (0 for a single value).

    Examples:
        >>> mean_ci95([1.0, 2.0, 3.0])  # t(0.975, 2) = 4.303, sd = 1, n = 3
        (2.0, 2.484...)
    """
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, 0.0
    return mean, _t975(n - 1) * statistics.stdev(values) / math.sqrt(n)


def mean_std_ci95(values: list[float]) -> tuple[float, float, float]:
    """Mean, sample standard deviation (0 for one value) and 95% CI half-width."""
    mean, ci = mean_ci95(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0, ci


def _t975(df: int) -> float:
    """97.5% quantile of Student's t (exact table to 10 degrees of freedom, then z + (z^3 + z) / 4df)."""
    table = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]
    return table[df - 1] if df <= len(table) else 1.96 + (1.96**3 + 1.96) / (4 * df)
