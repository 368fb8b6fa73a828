"""Window maths: which tumbling windows a reading belongs to, and their identities."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from iot_pipeline.cleaning import CleanReading

RESOLUTIONS: dict[str, int] = {"1m": 60, "1h": 3600, "1d": 86400}
SCOPES = ("sensor", "district")


@dataclass(frozen=True, order=True)
class Window:
    """One aggregate: a scope's key and metric over [start, start + resolution)."""

    scope: str
    key: str
    metric: str
    resolution: str
    start: int  # epoch seconds, a multiple of the resolution

    @property
    def end(self) -> int:
        return self.start + RESOLUTIONS[self.resolution]


def window_start(epoch: float, resolution: str) -> int:
    """Start of the tumbling window (UTC-aligned) holding this instant."""
    size = RESOLUTIONS[resolution]
    return int(epoch // size) * size


def aggregate_id(window: Window) -> str:
    """The deterministic document id of a window's aggregate."""
    start = datetime.fromtimestamp(window.start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{window.scope}:{window.key}:{window.metric}:{window.resolution}:{start}"


def windows_of(sensor_id: str, district: str, metric: str, epoch: float) -> set[Window]:
    """The windows, at every resolution and scope, that one reading falls into."""
    windows: set[Window] = set()
    for resolution in RESOLUTIONS:
        start = window_start(epoch, resolution)
        windows.add(Window("sensor", sensor_id, metric, resolution, start))
        windows.add(Window("district", district, metric, resolution, start))
    return windows


def touched_windows(readings: Iterable[CleanReading]) -> set[Window]:
    """Every window, at every resolution and scope, that these readings fall into."""
    windows: set[Window] = set()
    for clean in readings:
        r = clean.reading
        windows |= windows_of(r.sensor_id, r.district, r.metric, r.event_time.timestamp())
    return windows
