"""The pipeline's state: consumer lag and stalls per partition, last batch, dead letters,
failing and quarantined ranges."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from iot_pipeline.api import registry
from iot_pipeline.api.deps import Conf, Kafka, StateClient, Store
from iot_pipeline.api.models.pipeline import (
    FailingRange,
    PartitionLag,
    PipelineStatus,
    QuarantineEntry,
    settle_failing,
    store_refusal,
)
from iot_pipeline.api.models.problems import problem_schema
from iot_pipeline.api.upstream import KafkaPositions, read_run_state
from iot_pipeline.contracts.positions import PartitionPosition
from iot_pipeline.contracts.run_state import RunState, partition_health
from iot_pipeline.settings import Settings

router = APIRouter(
    prefix="/pipeline",
    tags=["pipeline"],
    responses={
        503: {"description": "Kafka, Redis or the search store is down", **problem_schema()}
    },
)


def _kafka_view(kafka: KafkaPositions, settings: Settings) -> tuple[list[PartitionPosition], int]:
    group = kafka.read(settings.kafka_sensor_data_topic)
    letters = kafka.read(settings.dead_letter_topic)
    return group, sum(p.high - p.low for p in letters)


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _partitions(
    group: list[PartitionPosition], state: RunState, settings: Settings
) -> list[PartitionLag]:
    health = partition_health(
        state, {p.partition: p.lag for p in group}, settings.etl_stall_seconds
    )
    return [
        PartitionLag(
            partition=p.partition,
            committed=p.committed,
            high_watermark=p.high,
            lag=p.lag,
            last_commit_age_seconds=h.last_commit_age,
            stalled=h.stalled,
        )
        for p, h in zip(group, health, strict=True)  # both ordered by partition
    ]


def _failing(state: RunState) -> list[FailingRange]:
    return [
        FailingRange(
            range=name,
            attempts=failure.count,
            error=failure.error,
            since=_moment(failure.at if failure.since is None else failure.since),
        )
        for name, failure in sorted(state.failing.items())
    ]


def _quarantines(state: RunState) -> list[QuarantineEntry]:
    return [
        QuarantineEntry(
            range=q.range,
            records=q.records,
            attempts=q.attempts,
            error=q.error,
            batch_id=q.batch_id,
            at=_moment(q.at),
        )
        for q in state.quarantines
    ]


@router.get(
    "/status",
    response_model=PipelineStatus,
    summary="Lag and stalls, last batch, dead letters, failing and quarantined ranges",
    description="Bounded whatever the load: the run state is one Redis round trip, Kafka's "
    "positions come from the process's one long-lived consumer and are reused for "
    "API_STATUS_CACHE_SECONDS, and the last batch is the newest entry of the sensor registry.",
)
async def pipeline_status(
    *,
    store: Store,
    state_client: StateClient,
    kafka: Kafka,
    settings: Conf,
) -> PipelineStatus:
    state = await read_run_state(state_client, settings)
    group, dead_letters = await run_in_threadpool(_kafka_view, kafka, settings)
    last = await registry.last_batch(store, settings)
    partitions = _partitions(sorted(group, key=lambda p: p.partition), state, settings)
    return PipelineStatus(
        topic=settings.kafka_sensor_data_topic,
        consumer_group=settings.etl_consumer_group,
        partitions=partitions,
        total_lag=sum(p.lag for p in partitions),
        stalled=any(p.stalled for p in partitions),
        stall_after_seconds=settings.etl_stall_seconds,
        last_batch=last,
        dead_letter_topic=settings.dead_letter_topic,
        dead_letters=dead_letters,
        consecutive_failed_runs=state.consecutive_failed_runs,
        quarantined_ranges=state.quarantined_ranges,
        quarantined_records=state.quarantined_records,
        failing_ranges=_failing(state),
        quarantines=_quarantines(state),
        store_refusal=store_refusal(state.refusal),
        across_partitions_waiting=state.across_waiting,
        settle_failing=settle_failing(state.settle_failure),
        lost_records=state.lost_records,
        topic_recreations=state.topic_recreations,
    )
