"""Small statistics shared by the report and the tuner."""

from __future__ import annotations

import math


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def nearest_rank(values: list[float], percent: float) -> float:
    """The nearest-rank percentile: the smallest value with ``percent`` % of values at or below."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one (start, end) interval: wall time with work in flight."""
    total, covered_to = 0.0, -math.inf
    for start, end in sorted(intervals):
        if end > covered_to:
            total += end - max(start, covered_to)
            covered_to = end
    return total
