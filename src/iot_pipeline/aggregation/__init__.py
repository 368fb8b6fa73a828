"""Tumbling-window aggregates per sensor and per district: 1-minute windows recomputed exactly
from the store, coarser ones merged from them."""

from iot_pipeline.aggregation.recompute import RecomputeReport, recompute_windows
from iot_pipeline.aggregation.windows import (
    RESOLUTIONS,
    Window,
    aggregate_id,
    aggregates_index,
    aggregates_pattern,
    touched_windows,
)

__all__ = [
    "RESOLUTIONS",
    "RecomputeReport",
    "Window",
    "aggregate_id",
    "aggregates_index",
    "aggregates_pattern",
    "recompute_windows",
    "touched_windows",
]
