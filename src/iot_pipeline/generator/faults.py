"""Fault kinds the simulator injects, their rates, and the labels that record them.

Labels go to a side channel (a JSON-lines file), never into the message: cleaning must find
faults from the data alone, and tests score it against these labels.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Faults drawn per reading; at most one of these per reading.
READING_FAULTS: tuple[str, ...] = (
    "malformed_json",
    "missing_field",
    "extra_field",
    "wrong_type",
    "impossible_value",
    "spike",
    "duplicate",
    "out_of_order",
    "late",
    "clock_skew",
)
# Faults of a sensor over a stretch of time (or for good): labelled on every reading affected.
SENSOR_FAULTS: tuple[str, ...] = ("stuck", "wrong_unit")
FAULT_KINDS: tuple[str, ...] = READING_FAULTS + SENSOR_FAULTS


class FaultRates(BaseModel):
    """How often each fault happens.

    Per-reading kinds are probabilities per reading; `stuck` and `outage` are the fraction of
    sensor-hours affected (a stuck sensor stays frozen for a 6-hour block, an outage lasts
    an hour); `wrong_unit` is the fraction of temperature sensors that are legacy
    devices reporting °F.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    malformed_json: float = Field(0.002, ge=0, le=1)
    missing_field: float = Field(0.002, ge=0, le=1)
    extra_field: float = Field(0.002, ge=0, le=1)
    wrong_type: float = Field(0.002, ge=0, le=1)
    impossible_value: float = Field(0.002, ge=0, le=1)
    spike: float = Field(0.002, ge=0, le=1)
    duplicate: float = Field(0.005, ge=0, le=1)
    out_of_order: float = Field(0.005, ge=0, le=1)
    late: float = Field(0.002, ge=0, le=1)
    clock_skew: float = Field(0.002, ge=0, le=1)
    stuck: float = Field(0.01, ge=0, le=1)
    wrong_unit: float = Field(0.1, ge=0, le=1)
    outage: float = Field(0.01, ge=0, le=1)

    @model_validator(mode="after")
    def _per_reading_total(self) -> FaultRates:
        total = sum(getattr(self, kind) for kind in READING_FAULTS)
        if total > 0.5:
            raise ValueError(f"per-reading fault rates add up to {total:.3f}; keep them <= 0.5")
        return self

    @classmethod
    def none(cls) -> FaultRates:
        """A clean network: no faults, no outages, no legacy sensors."""
        return cls(**dict.fromkeys(cls.model_fields, 0.0))

    @classmethod
    def parse(cls, assignments: list[str], base: FaultRates | None = None) -> FaultRates:
        """Apply `kind=rate` assignments (from the command line) on top of `base`."""
        values = (base or cls()).model_dump()
        for assignment in assignments:
            kind, sep, rate = assignment.partition("=")
            if not sep or kind not in values:
                raise ValueError(
                    f"bad fault rate {assignment!r}: use KIND=RATE with KIND one of "
                    + ", ".join(values)
                )
            try:
                values[kind] = float(rate)
            except ValueError:
                raise ValueError(
                    f"bad fault rate {assignment!r}: {rate!r} is not a number"
                ) from None
        return cls(**values)


@dataclass(frozen=True)
class FaultLabel:
    """What was injected into one emitted message (matched by event id or by content hash)."""

    event_id: str
    sensor_id: str
    faults: tuple[str, ...]
    sha1: str

    def to_json(self) -> dict[str, object]:
        return {
            "event_id": self.event_id,
            "sensor_id": self.sensor_id,
            "faults": list(self.faults),
            "sha1": self.sha1,
        }
