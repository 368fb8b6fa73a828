"""Response models of the API (what the OpenAPI document promises)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from iot_pipeline.api.edge import utc_moment
from iot_pipeline.schema import METRICS
from iot_pipeline.vocabulary import Metric, OverrideAction, OverrideStatus, Qc, Resolution, Scope

if TYPE_CHECKING:
    from iot_pipeline.contracts.run_state import Refusal

_READING_EXAMPLE: dict[str, Any] = {
    "event_id": "2afbd6f8-6b-1f",
    "sensor_id": "casa-maarif-01-pm25",
    "station_id": "casa-maarif-01",
    "district": "Maarif",
    "metric": "pm25",
    "value": 18.4,
    "unit": "µg/m³",
    "original_value": 18.4,
    "original_unit": "µg/m³",
    "event_time": "2026-11-28T10:15:05.000Z",
    "seq": 31,
    "location": {"lat": 33.5731, "lon": -7.6298},
    "battery_pct": 87.5,
    "firmware": "3.0.2",
    "flags": [],
    "valid": True,
    "qc": "S",
    "schema_version": 1,
    "pipeline_version": "0.1.0",
    "batch_id": "scheduled__2026-11-28T10:16:00_00:00",
    "ingest_time": "2026-11-28T10:16:01.204Z",
    "kafka": {"topic": "iot_sensor_data", "partition": 3, "offset": 120931},
}


class Location(BaseModel):
    lat: float
    lon: float


class KafkaSource(BaseModel):
    topic: str
    partition: int
    offset: int


class Reading(BaseModel):
    """A cleaned reading: canonical value, quality flags and provenance."""

    model_config = ConfigDict(json_schema_extra={"examples": [_READING_EXAMPLE]})

    event_id: str
    sensor_id: str
    station_id: str
    district: str
    metric: str
    value: float
    unit: str
    original_value: float
    original_unit: str
    event_time: datetime
    seq: int
    location: Location
    battery_pct: float
    firmware: str
    flags: list[str] = Field(description="Why the reading is suspect; empty when clean.")
    valid: bool = Field(description="Whether it enters the aggregates.")
    qc: Qc | None = Field(
        None,
        description="The quality-control verdict: `S` passed levels 1 and 2 (validity, then "
        "consistency in time and within its station), `C` passed level 1 with no recent "
        "history for level 2 to judge it by, `Q` questioned by level 2 or 3, `X` rejected by "
        "level 1; `G` accepted and `B` rejected by an operator's override "
        "(docs/quality.md). Null for readings stored before the verdict existed.",
    )
    override: Qc | None = Field(
        None, description="`G` or `B` when an operator's override changed the verdict."
    )
    auto_qc: Qc | None = Field(
        None, description="With an override: the verdict the rules alone gave."
    )
    interval_s: float | None = Field(
        None, description="Its sensor's sampling interval when it was cleaned (see Sensor)."
    )
    resolution: float | None = Field(
        None, description="Its sensor's resolution when it was cleaned (see Sensor)."
    )
    calibration_offset: float | None = Field(
        None,
        description="The offset an operator declared for its sensor, added to `value` "
        "(`original_value` is what the sensor sent); null when none was declared when it was "
        "cleaned.",
    )
    schema_version: int
    pipeline_version: str
    batch_id: str
    ingest_time: datetime
    kafka: KafkaSource
    quarantined: bool | None = Field(
        None,
        description="True while its record sits in a quarantined range: it was stored, but "
        "its range kept failing after that (its flags or windows may be incomplete) until a "
        "clean run replays the range.",
    )


class ReadingPage(BaseModel):
    """One page of readings; pass `next_cursor` as `cursor` for the next one."""

    items: list[Reading]
    next_cursor: str | None = Field(description="Absent on the last page.")


class LatestReadings(BaseModel):
    items: list[Reading]


MAX_DECLARED_INTERVAL = 86_400.0  # a day: the longest window completeness is counted over


class SensorMetadataRequest(BaseModel):
    """What an operator declares of one sensor; it applies to readings cleaned from then on
    (docs/quality.md). At least one of `interval_s`, `calibration_offset`, `active_from`,
    `active_to`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "metric": "temperature",
                    "interval_s": 3600,
                    "calibration_offset": -0.4,
                    "active_from": "2026-11-01T00:00:00Z",
                    "active_to": "2027-11-01T00:00:00Z",
                    "note": "recalibrated against the reference on 2026-10-28; ticket 4712",
                }
            ]
        },
    )

    metric: Metric | None = Field(
        None,
        description="The sensor's metric: the unit of `calibration_offset`, and the readings it "
        "applies to. Needed with `calibration_offset`; when the sensor has readings, it must "
        "be theirs.",
    )
    interval_s: float | None = Field(
        None,
        gt=0,
        le=MAX_DECLARED_INTERVAL,
        allow_inf_nan=False,
        description="The expected sampling interval in seconds (at most a day); completeness "
        "counts at it from the sensor's first reading, instead of the learned one.",
    )
    calibration_offset: float | None = Field(
        None,
        allow_inf_nan=False,
        description="Added to each reading's canonical value (after unit conversion), in the "
        "metric's canonical unit; at most the width of the metric's physical range either way.",
    )
    active_from: datetime | None = Field(
        None, description="In service from this event time (inclusive; without offset: UTC)."
    )
    active_to: datetime | None = Field(
        None, description="In service until this event time (exclusive)."
    )
    note: str | None = Field(None, max_length=500, description="Why (kept for the record).")

    @field_validator("active_from", "active_to")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else utc_moment(value)

    @model_validator(mode="after")
    def _consistent(self) -> SensorMetadataRequest:
        declared = (self.interval_s, self.calibration_offset, self.active_from, self.active_to)
        if all(value is None for value in declared):
            raise ValueError(
                "declare at least one of interval_s, calibration_offset, active_from, active_to"
            )
        if self.active_from and self.active_to and self.active_to <= self.active_from:
            raise ValueError("active_to must be after active_from")
        if self.calibration_offset is not None:
            if self.metric is None:
                raise ValueError("a calibration_offset needs its metric (its unit)")
            spec = METRICS[self.metric]
            width = spec.maximum - spec.minimum
            if abs(self.calibration_offset) > width:
                raise ValueError(
                    f"calibration_offset at most {width:g} {spec.unit} either way for "
                    f"{self.metric} (its physical range)"
                )
        return self


class SensorMetadata(BaseModel):
    """A sensor's declaration as stored."""

    sensor_id: str
    metric: Metric | None = None
    interval_s: float | None = None
    calibration_offset: float | None = None
    active_from: datetime | None = None
    active_to: datetime | None = None
    note: str | None = None
    declared_at: datetime = Field(description="When it was declared (or last replaced).")


class Sensor(BaseModel):
    """A sensor as its readings describe it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sensor_id": "casa-maarif-01-pm25",
                    "station_id": "casa-maarif-01",
                    "district": "Maarif",
                    "metric": "pm25",
                    "unit": "µg/m³",
                    "location": {"lat": 33.5731, "lon": -7.6298},
                    "firmware": "3.0.2",
                    "last_seen": "2026-11-28T10:15:05.000Z",
                    "last_value": 18.4,
                    "status": "online",
                }
            ]
        }
    )

    sensor_id: str
    station_id: str
    district: str
    metric: str
    unit: str
    location: Location
    firmware: str
    last_seen: datetime
    last_value: float
    status: Literal["online", "offline"]
    interval_s: float | None = Field(
        None,
        description="Its sampling interval in seconds, as its recent readings show it (the "
        "median gap); completeness is counted at it. Null until it has sent three.",
    )
    resolution: float | None = Field(
        None,
        description="The smallest step its values show (its quantisation step: docs/quality.md).",
    )
    declared: SensorMetadata | None = Field(
        None,
        description="What an operator declared of it (PUT /sensors/{sensor_id}/metadata); null "
        "when nothing. A declared `interval_s` wins over the learned one for completeness.",
    )


class SensorList(BaseModel):
    items: list[Sensor]


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


class PartitionLag(BaseModel):
    partition: int
    committed: int
    high_watermark: int
    lag: int
    last_commit_age_seconds: float | None = Field(
        description="Since the ETL last committed the partition (or first planned it); "
        "null when the ETL has not seen it yet."
    )
    stalled: bool = Field(description="Lag and no commit for longer than the stall age.")


class LastBatch(BaseModel):
    batch_id: str
    ingest_time: datetime


class FailingRange(BaseModel):
    """A range that failed and has not been committed or quarantined yet."""

    range: str = Field(description="`<topic>:<partition>:<start offset>`.")
    attempts: int
    error: str = Field(description="The latest attempt's error.")
    since: datetime = Field(description="The first failed attempt.")


class QuarantineEntry(BaseModel):
    """A range set aside after repeated failures: its records went to the dead letters."""

    range: str
    records: int
    attempts: int
    error: str
    batch_id: str
    at: datetime


class StoreRefusal(BaseModel):
    """The search engine refuses the pipeline's writes for a reason of its own (a write
    block such as a full disk's, a login without the privilege, an index it will not
    create): the ranges named wait, nothing is dead-lettered, until an operator removes the
    cause."""

    error: str = Field(description="The engine's answer: status, error type, reason, index.")
    ranges: list[str] = Field(description="The ranges of the last run it refused.")
    since: datetime = Field(description="The first run it refused in this episode.")
    last_run: datetime = Field(description="The latest run it refused.")


def store_refusal(refusal: Refusal | None) -> StoreRefusal | None:
    """The run state's refusal, as the API shows it."""
    if refusal is None:
        return None
    return StoreRefusal(
        error=refusal.error,
        ranges=refusal.ranges,
        since=datetime.fromtimestamp(refusal.since, UTC),
        last_run=datetime.fromtimestamp(refusal.at, UTC),
    )


class PipelineStatus(BaseModel):
    topic: str
    consumer_group: str
    partitions: list[PartitionLag]
    total_lag: int
    stalled: bool = Field(description="Whether any partition is stalled.")
    stall_after_seconds: int = Field(description="The stall age (`ETL_STALL_SECONDS`).")
    last_batch: LastBatch | None = Field(description="Newest batch with indexed readings.")
    dead_letter_topic: str
    dead_letters: int = Field(description="Records in the dead-letter topic.")
    consecutive_failed_runs: int = Field(
        description="ETL runs in a row with a failed or quarantined range."
    )
    quarantined_ranges: int = Field(description="Ranges quarantined so far.")
    quarantined_records: int = Field(description="Records of the quarantined ranges.")
    failing_ranges: list[FailingRange]
    quarantines: list[QuarantineEntry] = Field(description="The newest quarantines first.")
    store_refusal: StoreRefusal | None = Field(
        None, description="Set while the search engine refuses the pipeline's writes."
    )
    lost_records: int = Field(
        0, description="Records Kafka's retention deleted before the ETL processed them."
    )
    topic_recreations: int = Field(
        0, description="Times the sensor topic was found deleted and created again."
    )


class Health(BaseModel):
    status: Literal["ok"]


class StalledPartition(BaseModel):
    partition: int
    lag: int
    last_commit_age_seconds: float


class PipelineHealth(BaseModel):
    """Whether the ETL keeps up: `stalled` when a partition has lag and no recent commit,
    `refused` when the search engine refused the last run's writes for a reason of its own."""

    status: Literal["ok", "stalled", "refused"]
    detail: str
    stall_after_seconds: int
    stalled_partitions: list[StalledPartition]
    total_lag: int
    consecutive_failed_runs: int
    store_refusal: StoreRefusal | None = None


class Ready(BaseModel):
    status: Literal["ready"]
    engine: str


def problem_schema() -> dict[str, Any]:
    """RFC 9457 problem details, for the OpenAPI document."""
    return {
        "content": {
            "application/problem+json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "instance": {"type": "string"},
                        "request_id": {"type": "string"},
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "parameter": {"type": "string"},
                                    "message": {"type": "string"},
                                },
                            },
                        },
                    },
                    "required": ["type", "title", "status"],
                }
            }
        }
    }


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


MAX_OVERRIDE_SPAN = timedelta(days=366)


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
