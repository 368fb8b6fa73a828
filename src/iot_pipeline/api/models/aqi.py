"""The hourly air-quality index per district or station."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class AqiSubIndex(BaseModel):
    """One pollutant's part of an hour's AQI."""

    metric: str
    concentration: float = Field(description="Averaged over `averaging_hours`, in `unit`.")
    unit: str = Field(description="The standard's unit (µg/m³, ppm or ppb).")
    averaging_hours: int
    index: int


class AqiHour(BaseModel):
    """The AQI of one district or station for one hour (null when no pollutant has enough
    data)."""

    district: str
    station: str | None = Field(None, description="The station (scope `station`).")
    hour_start: datetime
    hour_end: datetime
    aqi: int | None
    category: str | None
    color: str | None = Field(description="The standard's colour of the category.")
    dominant: str | None = Field(description="The pollutant with the highest sub-index.")
    sub_indices: list[AqiSubIndex]


class AqiPage(BaseModel):
    standard: str
    scope: Literal["district", "station"]
    items: list[AqiHour]
