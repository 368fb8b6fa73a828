"""Mergeable window statistics: what a window stores so that coarser windows never need the
raw readings.

A window keeps its count, exact sum, min, max and `m2` (the sum of squared deviations from
its mean). Two windows merge with Chan, Golub and LeVeque's pairwise update

    n = na + nb,  d = mean_b - mean_a,  m2 = m2a + m2b + d² · na · nb / n

which, unlike Σx² - (Σx)²/n, does not cancel catastrophically when the variance is small
next to the mean. Sums are added with `math.fsum`, so a merged mean equals the mean of the
raw values to the last bits that the children's sums carry.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Moments:
    """Statistics of the valid values of a window (count 0: no valid value)."""

    count: int = 0
    sum: float = 0.0
    min: float | None = None
    max: float | None = None
    m2: float = 0.0

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    @property
    def std(self) -> float | None:
        """Population standard deviation (as the engine's extended_stats reports it)."""
        return math.sqrt(self.m2 / self.count) if self.count else None

    @classmethod
    def from_engine(cls, stats: Mapping[str, Any]) -> Moments:
        """From an `extended_stats` result over one window's valid values."""
        count = int(stats.get("count") or 0)
        if not count:
            return cls()
        low, high = float(stats["min"]), float(stats["max"])
        # The engine's variance is (Σx² - (Σx)²/n)/n: equal values may leave a few ulps of
        # noise, and a window of equal values has none.
        variance = 0.0 if low == high else max(0.0, float(stats["variance"]))
        return cls(count, float(stats["sum"]), low, high, variance * count)

    @classmethod
    def of(cls, values: Sequence[float]) -> Moments:
        """Of these values (two passes: the deviations from the exact mean)."""
        if not values:
            return cls()
        total = math.fsum(values)
        mean = total / len(values)
        m2 = math.fsum((v - mean) * (v - mean) for v in values)
        return cls(len(values), total, min(values), max(values), m2)

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Moments:
        """From a stored aggregate document."""
        count = int(doc.get("count") or 0)
        if not count:
            return cls()
        return cls(count, float(doc["sum"]), doc["min"], doc["max"], float(doc.get("m2") or 0))


def merge(parts: Iterable[Moments]) -> Moments:
    """The statistics of the union of disjoint windows (Chan et al.'s pairwise update)."""
    present = [p for p in parts if p.count]
    if not present:
        return Moments()
    count, mean, m2 = 0, 0.0, 0.0
    for part in present:
        part_mean = part.sum / part.count
        total = count + part.count
        delta = part_mean - mean
        mean += delta * part.count / total
        m2 += part.m2 + delta * delta * count * part.count / total
        count = total
    return Moments(
        count=count,
        sum=math.fsum(p.sum for p in present),
        min=min(p.min for p in present if p.min is not None),
        max=max(p.max for p in present if p.max is not None),
        m2=m2,
    )


def close(a: float | None, b: float | None, rel: float = 1e-9) -> bool:
    """Equal up to the noise of floating-point summation order (relative, or absolute near 0)."""
    if a is None or b is None:
        return a is b
    return abs(a - b) <= rel * max(abs(a), abs(b), 1.0)
