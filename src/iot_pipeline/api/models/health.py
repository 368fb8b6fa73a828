"""Liveness, readiness and the pipeline's health."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from iot_pipeline.api.models.pipeline import SettleFailing, StoreRefusal


class Health(BaseModel):
    status: Literal["ok"]


class StalledPartition(BaseModel):
    partition: int
    lag: int
    last_commit_age_seconds: float


class PipelineHealth(BaseModel):
    """Whether the ETL keeps up: `stalled` when a partition has lag and no recent commit,
    `refused` when the search engine refused the last run's writes for a reason of its own;
    `stalled` too when the settles across partitions (district windows, buddy check) have
    failed for longer than the stall age."""

    status: Literal["ok", "stalled", "refused"]
    detail: str
    stall_after_seconds: int
    stalled_partitions: list[StalledPartition]
    total_lag: int
    consecutive_failed_runs: int
    store_refusal: StoreRefusal | None = None
    across_partitions_waiting: int = 0
    settle_failing: SettleFailing | None = None


class Ready(BaseModel):
    status: Literal["ready"]
    engine: str
