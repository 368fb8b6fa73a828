"""Operators' quality-control overrides: the request, the override as stored, the list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from iot_pipeline.api.edge import utc_moment
from iot_pipeline.vocabulary import OverrideAction, OverrideStatus

MAX_OVERRIDE_SPAN = timedelta(days=366)


class QcOverrideRequest(BaseModel):
    """An operator's accept (`G`) or reject (`B`) list: one sensor over [start, end)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "sensor_id": "casa-maarif-01-pm25",
                    "start": "2026-11-28T08:00:00Z",
                    "end": "2026-11-28T12:00:00Z",
                    "action": "reject",
                    "reason": "inlet blocked by roadworks dust; ticket 4711",
                }
            ]
        },
    )

    sensor_id: str = Field(min_length=1, max_length=64)
    start: datetime = Field(description="From this event time (inclusive; without offset: UTC).")
    end: datetime = Field(description="Until this event time (exclusive).")
    action: OverrideAction = Field(
        description="`reject`: the readings are `B`, out of the aggregates, whatever their "
        "flags. `accept`: readings the rules questioned or passed are `G`, in the aggregates; "
        "never one level 1 rejected (`X`). A reject wins over an accept."
    )
    reason: str = Field(min_length=1, max_length=500, description="Why (kept for the record).")

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return utc_moment(value)

    @field_validator("reason")
    @classmethod
    def _said(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("say why")
        return value.strip()

    @model_validator(mode="after")
    def _span(self) -> QcOverrideRequest:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.end - self.start > MAX_OVERRIDE_SPAN:
            raise ValueError(f"at most {MAX_OVERRIDE_SPAN.days} days from start to end")
        return self


class QcOverride(BaseModel):
    """An override as stored, with where its settlement on the stored readings stands."""

    id: str
    sensor_id: str
    start: datetime
    end: datetime
    action: OverrideAction
    reason: str
    status: OverrideStatus = Field(
        description="`pending`: in force for new readings, not yet applied to the stored ones; "
        "`applied`: stored readings and windows follow it; `removing`: deleted, its readings "
        "being reverted; `removed`: reverted, kept for the record."
    )
    created_at: datetime
    applied_at: datetime | None = None
    readings_changed: int | None = Field(None, description="Stored readings it changed.")
    windows_written: int | None = Field(None, description="Windows recomputed when applied.")
    removal_requested_at: datetime | None = None
    removed_at: datetime | None = None
    readings_reverted: int | None = None
    windows_rewritten: int | None = None
    settled_until: datetime | None = Field(
        None,
        description="While `pending` or `removing`: how far into its range the workers have "
        "settled it (one day per task); null before they start and once settled.",
    )

    @model_validator(mode="before")
    @classmethod
    def _progress(cls, data: Any) -> Any:
        """The stored progress (`{status, until_ms}`) as `settled_until`, for its status."""
        if isinstance(data, dict):
            progress = data.get("progress") or {}
            if progress.get("status") == data.get("status") and "until_ms" in progress:
                until = datetime.fromtimestamp(progress["until_ms"] / 1000, UTC)
                data = {**data, "settled_until": until}
        return data


class QcOverrideList(BaseModel):
    items: list[QcOverride]
