"""Tumbling-window statistics per sensor or district."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from iot_pipeline.vocabulary import Resolution, Scope


class Aggregate(BaseModel):
    """One tumbling window of one sensor or district and metric."""

    scope: Scope
    key: str
    metric: str
    unit: str
    resolution: Resolution
    window_start: datetime
    window_end: datetime
    count: int = Field(description="Valid readings in the window.")
    min: float | None
    max: float | None
    mean: float | None
    sum: float
    std: float | None = Field(description="Population standard deviation.")
    sensors: int
    expected: float = Field(
        description="Readings expected in the window at each reporting sensor's own sampling "
        "interval (as its readings show it; SENSOR_SAMPLE_INTERVAL_SECONDS until learned)."
    )
    completeness: float | None = Field(description="Valid readings over expected, at most 1.")
    readings: int = Field(description="All readings received, valid or not.")
    invalid: int
    quality: dict[str, int] = Field(description="Readings per quality flag.")
    qc: dict[str, int] = Field(
        default_factory=dict,
        description="Readings per quality-control verdict (`S`, `C`, `Q`, `X`, `G`, `B`; see "
        "Reading).",
    )
    revision: int = Field(description="Goes up each time late data changes the window.")


class AggregatePage(BaseModel):
    items: list[Aggregate]
    next_cursor: str | None
