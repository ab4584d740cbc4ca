"""Statistics of the benchmark reports, shared by ``learning.py`` and ``make_table.py`` (no torch import, so the
table script starts in a blink)."""
from __future__ import annotations

import math
import statistics


def mean_ci95(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of a 95% Student-t interval (0 for a single value)."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, 0.0
    return mean, _t975(n - 1) * statistics.stdev(values) / math.sqrt(n)


def _t975(df: int) -> float:
    """97.5% quantile of Student's t (exact table to 10 degrees of freedom, then z + (z^3 + z) / 4df)."""
    table = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]
    return table[df - 1] if df <= len(table) else 1.96 + (1.96**3 + 1.96) / (4 * df)
