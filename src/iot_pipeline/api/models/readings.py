"""Cleaned readings: a page of them, the latest per sensor. The reading itself is the stored
one (`contracts.readings.Reading`): the document the workers write is what the API serves."""

from __future__ import annotations

from pydantic import BaseModel, Field

from iot_pipeline.contracts.readings import Reading


class ReadingPage(BaseModel):
    """One page of readings; pass `next_cursor` as `cursor` for the next one."""

    items: list[Reading]
    next_cursor: str | None = Field(description="Absent on the last page.")


class LatestReadings(BaseModel):
    items: list[Reading]
