"""Window maths: which tumbling windows a reading belongs to, and their identities."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from iot_pipeline.cleaning import CleanReading
from iot_pipeline.vocabulary import RESOLUTIONS

# Each coarser resolution is merged from the next finer one (1h from 1m, 1d from 1h).
PARENT: dict[str, str] = {"1m": "1h", "1h": "1d"}
CHILD: dict[str, str] = {parent: child for child, parent in PARENT.items()}


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

    def parent(self) -> Window:
        """The next coarser window holding this one."""
        resolution = PARENT[self.resolution]
        return Window(
            self.scope, self.key, self.metric, resolution, window_start(self.start, resolution)
        )

    def children(self) -> list[Window]:
        """The next finer windows that tile this one, in time order."""
        child = CHILD[self.resolution]
        step = RESOLUTIONS[child]
        return [
            Window(self.scope, self.key, self.metric, child, start)
            for start in range(self.start, self.end, step)
        ]


def window_start(epoch: float, resolution: str) -> int:
    """Start of the tumbling window (UTC-aligned) holding this instant."""
    size = RESOLUTIONS[resolution]
    return int(epoch // size) * size


@lru_cache(maxsize=65536)
def aggregate_id(window: Window) -> str:
    """The deterministic document id of a window's aggregate."""
    start = datetime.fromtimestamp(window.start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{window.scope}:{window.key}:{window.metric}:{window.resolution}:{start}"


def windows_of(sensor_id: str, district: str, metric: str, epoch: float) -> set[Window]:
    """The 1-minute windows, per sensor and per district, that one reading falls into (the
    coarser windows follow from them)."""
    start = window_start(epoch, "1m")
    return {
        Window("sensor", sensor_id, metric, "1m", start),
        Window("district", district, metric, "1m", start),
    }


def touched_windows(readings: Iterable[CleanReading]) -> set[Window]:
    """Every 1-minute window, per sensor and per district, that these readings fall into."""
    windows: set[Window] = set()
    for clean in readings:
        r = clean.reading
        windows |= windows_of(r.sensor_id, r.district, r.metric, r.event_time.timestamp())
    return windows
