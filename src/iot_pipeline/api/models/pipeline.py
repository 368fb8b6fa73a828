"""The pipeline's state: lag per partition, last batch, failing and quarantined ranges, the
search engine's refusal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from iot_pipeline.contracts.run_state import Refusal, SettleFailure


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


class SettleFailing(BaseModel):
    """The settle across partitions (district windows, buddy check) of the recent runs
    failed: the readings are stored and committed, and the work across partitions waits,
    kept, for the next settle that gets through."""

    error: str = Field(description="The latest failure's message.")
    since: datetime = Field(description="The first run whose settle failed in this episode.")
    last_run: datetime = Field(description="The latest run whose settle failed.")


def settle_failing(failure: SettleFailure | None) -> SettleFailing | None:
    """The run state's settle failure, as the API shows it."""
    if failure is None:
        return None
    return SettleFailing(
        error=failure.error,
        since=datetime.fromtimestamp(failure.since, UTC),
        last_run=datetime.fromtimestamp(failure.at, UTC),
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
        description="ETL runs in a row with a failed or quarantined range, or a failed settle."
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
    across_partitions_waiting: int = Field(
        0,
        description="District windows and buddy slots the ranges left for a settle (work "
        "across partitions, done once per run) that no settle has finished yet.",
    )
    settle_failing: SettleFailing | None = Field(
        None, description="Set while the runs' settles across partitions fail."
    )
