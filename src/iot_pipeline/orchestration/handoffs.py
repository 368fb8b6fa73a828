"""What the DAGs' tasks hand each other: typed, small, keyed by the run, built once.

Airflow passes these between tasks through XCom as JSON (`to_xcom()`, `model_validate()`):

    BatchPlan      plan -> process (-> report)   the run's batch id, clock and offset ranges
    ReplayRequest  the replay DAGs' parameters    what to reprocess: offsets or Kafka times
    RunReport      report -> verdict, behind     what the run did, as the Airflow UI shows it

The process step's summary (`contracts.reports.BatchSummary`: the workers' range reports
summed field by field, and the committable ranges) goes to `commit` and `report` the same way.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from iot_pipeline.contracts.ranges import OffsetRange
from iot_pipeline.contracts.reports import BatchSummary, run_counts


class _Handoff(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_xcom(self) -> dict[str, Any]:
        """The JSON form Airflow stores between tasks."""
        return self.model_dump(mode="json")


class BatchPlan(_Handoff):
    """A batch fixed before any work starts: a retried task works on exactly these ranges,
    at this clock (`ingest_time` is stamped on every document of the batch)."""

    batch_id: str = Field(min_length=1, max_length=128)
    ingest_time: AwareDatetime
    planned_at: float = Field(description="Epoch seconds; the run's duration counts from it.")
    ranges: list[OffsetRange]

    @classmethod
    def now(cls, batch_id: str, ranges: list[OffsetRange]) -> BatchPlan:
        return cls(
            batch_id=batch_id,
            ingest_time=datetime.now(UTC),
            planned_at=time.time(),
            ranges=ranges,
        )


class ReplayRequest(_Handoff):
    """What a replay reprocesses: an offset range of one or every partition of `topic`, or
    the records whose Kafka timestamps fall in [start_time, end_time)."""

    topic: str = Field(min_length=1)
    partition: int | None = Field(default=None, ge=0)
    start_offset: int | None = Field(default=None, ge=0)
    end_offset: int | None = Field(default=None, ge=0)
    start_time: datetime | None = None
    end_time: datetime | None = None

    @field_validator("start_time", "end_time", mode="before")
    @classmethod
    def _iso_time(cls, value: object) -> object:
        """ISO 8601 text (a trailing Z allowed); a time without an offset is UTC."""
        if value in (None, ""):
            return None
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError as exc:
                raise ValueError(f"not an ISO 8601 time: {value!r}") from exc
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _offsets_or_times(self) -> ReplayRequest:
        if self.start_time or self.end_time:
            if self.start_offset is not None or self.end_offset is not None:
                raise ValueError("give either offsets or times, not both")
            if not (self.start_time and self.end_time):
                raise ValueError("a time range needs both start_time and end_time (ISO 8601)")
        return self

    @property
    def by_time(self) -> bool:
        return self.start_time is not None


class RunReport(_Handoff):
    """The run's summary, as the report task shows it in the Airflow UI."""

    batch_id: str
    records_read: int = 0
    indexed: int = 0
    valid: int = 0
    flagged: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    dead_letters_new: int = 0
    still_dead: int = 0
    retried_items: int = 0
    windows_updated: int = 0
    cross_metric_changes: int = 0
    spatial_changes: int = 0
    partitions_committed: int = 0
    failed_ranges: list[str] = Field(default_factory=list)
    quarantined_ranges: list[str] = Field(default_factory=list)
    # the settle across partitions failed: its district windows and buddy slots wait
    settle_error: str | None = None
    lag_after: int = 0
    lag_per_partition: dict[int, int] = Field(default_factory=dict)
    duration_seconds: float = 0.0
    consecutive_failed_runs: int = 0

    @classmethod
    def of(
        cls,
        plan: BatchPlan,
        summary: BatchSummary,
        lag: dict[int, int],
        consecutive_failed_runs: int,
    ) -> RunReport:
        """The report of a run from its plan and the process step's summary: every count,
        under the names `contracts.reports.RENAMED` gives them."""
        return cls(
            batch_id=plan.batch_id,
            **run_counts(summary),
            partitions_committed=len(summary.done),
            failed_ranges=[f"{f.range}: {f.error}" for f in summary.failures],
            quarantined_ranges=[f"{q.range} ({q.records} records)" for q in summary.quarantined],
            settle_error=summary.settle_error,
            lag_after=sum(lag.values()),
            lag_per_partition=lag,
            duration_seconds=round(time.time() - plan.planned_at, 1),
            consecutive_failed_runs=consecutive_failed_runs,
        )

    @property
    def clean(self) -> bool:
        """No range failed or was quarantined, and the settle across partitions succeeded."""
        return not (self.failed_ranges or self.quarantined_ranges or self.settle_error)
