"""What a range did, as the worker reports it and the orchestrator sums it.

One model all the way from the worker to the Airflow UI:

    RangeReport    worker -> orchestrator (Celery result, JSON)   one range's counts
    BatchSummary   process -> commit, report (XCom, JSON)         the counts summed, field by
                                                                  field, and per partition
                                                                  what may be committed
    RunReport      report -> verdict, behind (XCom, JSON)         the same counts under the
                                                                  names `RENAMED` gives them

Each is validated on receipt (`model_validate`), so a malformed or foreign result fails
loudly where it arrives instead of turning into zeros.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from iot_pipeline.contracts.ranges import OffsetRange


class RangeCounts(BaseModel):
    """What processing counted: every field an integer summed over ranges (and `seconds`)."""

    model_config = ConfigDict(extra="forbid")

    records: int = 0  # records read from Kafka
    indexed: int = 0  # readings written to the store now
    valid: int = 0
    flagged: int = 0
    duplicates: int = 0
    dead_letters: int = 0  # records of the range that are dead letters
    dead_letters_new: int = 0  # of which written now (the others were, by an earlier run)
    still_dead: int = 0  # records replayed from the dead-letter topic that fail again
    retried_items: int = 0  # bulk items the engine asked to retry
    windows: int = 0  # window documents written
    cross_metric_changes: int = 0  # readings whose cross-metric flag changed
    spatial_changes: int = 0  # readings whose buddy-check verdict changed
    seconds: float = 0.0  # task time

    def add(self, other: RangeCounts) -> None:
        """Add another's counts, field by field."""
        for name in RangeCounts.model_fields:
            total = getattr(self, name) + getattr(other, name)
            setattr(self, name, round(total, 3) if name == "seconds" else total)


class RangeReport(RangeCounts):
    """What processing one range did (the Celery task's result)."""

    # a newer worker may report more than this orchestrator knows: kept out, not refused
    model_config = ConfigDict(extra="ignore", frozen=True)

    batch_id: str
    range: str
    end: int  # where the range really ended: the planned end, or less when cut by bytes
    stages: dict[str, float] = Field(default_factory=dict)  # seconds per stage

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def short(self) -> str:
        """The line the orchestrator logs per range."""
        keys = ("records", "indexed", "valid", "flagged", "dead_letters", "windows", "seconds")
        return ", ".join(f"{k}={getattr(self, k)}" for k in keys)


# Why a range failed, as far as quarantine goes: only a failure of the processing itself
# (FAILED) may be the records' fault; the others hold the partition, never quarantine it.
FAILED = "failed"  # processing raised (a record, or our code): narrowed, maybe quarantined
REFUSED = "refused"  # the search engine refuses writes for a reason of its own
UNAVAILABLE = "unavailable"  # a dependency stayed unreachable through the task's retries
TIMED_OUT = "timed_out"  # not done within the run's task timeout


class RangeFailure(BaseModel):
    """A range that failed (or timed out): its offsets, the error and its kind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    range: OffsetRange
    error: str
    kind: str = FAILED

    @property
    def records_to_blame(self) -> bool:
        """Whether the range's records may be the reason (only then is it narrowed)."""
        return self.kind == FAILED


class QuarantinedRange(BaseModel):
    """A range set aside in this run (its records are dead letters now)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    range: str
    records: int


class BatchSummary(RangeCounts):
    """What a batch did: its ranges' counts summed, and per partition what may be committed."""

    batch_id: str
    ranges: int = 0
    per_range: list[str] = Field(default_factory=list)
    # per partition, the offsets processed from the planned start without a gap (committable)
    done: list[OffsetRange] = Field(default_factory=list)
    failures: list[RangeFailure] = Field(default_factory=list)
    quarantined: list[QuarantinedRange] = Field(default_factory=list)
    # why the run's settle across partitions failed (its work stays pending for the next)
    settle_error: str | None = None

    def add_range(self, report: RangeReport) -> None:
        self.ranges += 1
        self.add(report)
        self.per_range.append(f"{report.range}: {report.records} records")

    def merge(self, other: BatchSummary) -> None:
        """Add the counts of another summary of the same batch (its ranges, not its `done`)."""
        self.add(other)
        self.ranges += other.ranges
        self.per_range += other.per_range

    def to_xcom(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def totals(self) -> dict[str, Any]:
        """The counts and the number of ranges, without the per-range lists (a replay's
        result in the Airflow UI)."""
        return self.model_dump(
            mode="json", exclude={"per_range", "done", "failures", "quarantined", "settle_error"}
        )


# The run report's names for the counts whose worker name would not say what they mean to
# someone reading the run; every other count keeps its name.
RENAMED = {"records": "records_read", "dead_letters": "dead_lettered", "windows": "windows_updated"}


def run_counts(summary: RangeCounts) -> dict[str, int]:
    """The summary's counts under the run report's names (`seconds` is the tasks' own)."""
    return {
        RENAMED.get(name, name): getattr(summary, name)
        for name in RangeCounts.model_fields
        if name != "seconds"
    }
