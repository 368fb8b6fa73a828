"""Tumbling-window aggregates per sensor and per district: 1-minute windows recomputed exactly
from the store, coarser ones merged from them."""

from iot_pipeline.aggregation.recompute import RecomputeReport, recompute_windows
from iot_pipeline.aggregation.windows import (
    Window,
    aggregate_id,
    touched_windows,
)

__all__ = [
    "RecomputeReport",
    "Window",
    "aggregate_id",
    "recompute_windows",
    "touched_windows",
]
