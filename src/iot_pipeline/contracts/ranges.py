"""Work units: a batch is a fixed set of offset ranges, decided before any work starts."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator


class OffsetRange(BaseModel):
    """Offsets [start, end) of one partition."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str = Field(min_length=1)
    partition: int = Field(ge=0)
    start: int = Field(ge=0)
    end: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> OffsetRange:
        if self.end < self.start:
            raise ValueError(f"end offset {self.end} is before start offset {self.start}")
        return self

    @property
    def size(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]:{self.start}-{self.end}"


class RangeTask(BaseModel):
    """What one Celery task processes: a range, in a batch, at the batch's fixed clock.

    `ingest_time` is set once per batch (never `now()` in the task), so a retried or replayed
    task produces exactly the same documents.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_id: str = Field(min_length=1, max_length=128)
    ingest_time: AwareDatetime
    range: OffsetRange
    # A replay keeps its cleaner state apart from the live pipeline's (and never commits).
    replay: bool = False
    # What spans partitions (the district windows, the buddy check) is left to the run's
    # settle (processing.across_partitions) rather than done by the range itself.
    per_run: bool = False

    @classmethod
    def of(
        cls,
        batch_id: str,
        ingest_time: datetime,
        range_: OffsetRange,
        replay: bool = False,
        per_run: bool = False,
    ) -> RangeTask:
        return cls(
            batch_id=batch_id, ingest_time=ingest_time, range=range_, replay=replay, per_run=per_run
        )

    @property
    def task_id(self) -> str:
        """The Celery task id of this range in this batch: deterministic, so the orchestrator
        can find, reuse or revoke it."""
        r = self.range
        return f"range:{self.batch_id}:{r.topic}:{r.partition}:{r.start}-{r.end}"
