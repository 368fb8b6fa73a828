"""What an operator declared of a sensor, and what it does to the sensor's readings at
cleaning time. Pure logic; storing and loading declarations is `contracts.metadata`.

A declaration applies to readings cleaned after it was made, never retroactively: the
stored readings keep what they were cleaned with (their `calibration_offset`, `interval_s`).
"""

from __future__ import annotations

from dataclasses import dataclass

from iot_pipeline.cleaning.state import decimals
from iot_pipeline.vocabulary import INACTIVE

# A calibrated value keeps at most this many decimals: a sum of two doubles has noise in its
# last bits, and the value's decimals are what the cleaner learns a resolution from.
MAX_DECIMALS = 6


@dataclass(frozen=True)
class Declaration:
    """One sensor's declared metadata; None: not declared (the cleaner's own figures hold).

    `calibration_offset` is in the canonical unit of `metric` and applies to that metric's
    readings only. The active period is [active_from, active_to) of event time (epoch
    seconds), open where a bound is None.
    """

    sensor_id: str
    metric: str | None = None
    interval_s: float | None = None
    calibration_offset: float | None = None
    active_from: float | None = None
    active_to: float | None = None

    def offset_for(self, metric: str) -> float | None:
        """The offset to add to a canonical value of this metric (None: none declared)."""
        if self.calibration_offset is None or metric != self.metric:
            return None
        return self.calibration_offset

    def active(self, epoch: float) -> bool:
        """Whether the sensor was in service at this event time, as declared."""
        if self.active_from is not None and epoch < self.active_from:
            return False
        return self.active_to is None or epoch < self.active_to


def calibrated(value: float, offset: float) -> float:
    """`value` corrected by `offset`, with no more decimals than the two of them show."""
    places = min(MAX_DECIMALS, max(decimals(value), decimals(offset)))
    return round(value + offset, places)


def activity_flags(declared: Declaration | None, epoch: float) -> tuple[str, ...]:
    """`inactive` for a reading outside its sensor's declared active period."""
    if declared is None or declared.active(epoch):
        return ()
    return (INACTIVE,)
