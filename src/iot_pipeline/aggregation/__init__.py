"""Tumbling-window aggregates per sensor and per district, recomputed exactly from the store."""

from iot_pipeline.aggregation.recompute import recompute_windows
from iot_pipeline.aggregation.windows import RESOLUTIONS, Window, aggregate_id, touched_windows

__all__ = ["RESOLUTIONS", "Window", "aggregate_id", "recompute_windows", "touched_windows"]
