"""Small statistics helpers for the benchmarks."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["percentile", "summary_ms"]


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be within 0..100, got {pct}")
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    if lo == hi:
        return ordered[int(k)]
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """n, p50, p99, mean and max of durations given in seconds, in milliseconds."""
    ms = [v * 1000.0 for v in values_s]
    return {
        "n": float(len(ms)),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "mean_ms": sum(ms) / len(ms),
        "max_ms": max(ms),
    }
