"""The pipeline's state: consumer lag per partition, last batch, dead letters."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from iot_pipeline.api.deps import Conf, Store, readings_pattern
from iot_pipeline.api.models import LastBatch, PartitionLag, PipelineStatus, problem_schema
from iot_pipeline.settings import Settings
from iot_pipeline.storage import TransientStoreError

router = APIRouter(
    tags=["pipeline"],
    responses={503: {"description": "Kafka or the search store is down", **problem_schema()}},
)


def _kafka_view(settings: Settings) -> tuple[list[PartitionLag], int]:
    from iot_pipeline.orchestration.offsets import OffsetsError, positions

    try:
        group = positions(settings, settings.kafka_sensor_data_topic, settings.etl_consumer_group)
        letters = positions(settings, settings.dead_letter_topic, settings.etl_consumer_group)
    except OffsetsError as exc:
        # the same answer as a store outage: a dependency is down, retry later
        raise TransientStoreError(f"Kafka: {exc}") from exc
    lags = [
        PartitionLag(partition=p.partition, committed=p.committed, high_watermark=p.high, lag=p.lag)
        for p in group
    ]
    return lags, sum(p.high - p.low for p in letters)


@router.get(
    "/pipeline/status", response_model=PipelineStatus, summary="Lag, last batch, dead letters"
)
async def pipeline_status(
    *,
    store: Store,
    settings: Conf,
) -> PipelineStatus:
    partitions, dead_letters = await run_in_threadpool(_kafka_view, settings)
    body = {
        "size": 1,
        "_source": ["batch_id", "ingest_time"],
        "sort": [{"ingest_time": {"order": "desc"}}],
        "track_total_hits": False,
    }
    hits = (await store.search(readings_pattern(settings), body))["hits"]["hits"]
    last = (
        LastBatch(
            batch_id=hits[0]["_source"]["batch_id"],
            ingest_time=datetime.fromisoformat(hits[0]["_source"]["ingest_time"]),
        )
        if hits
        else None
    )
    return PipelineStatus(
        topic=settings.kafka_sensor_data_topic,
        consumer_group=settings.etl_consumer_group,
        partitions=partitions,
        total_lag=sum(p.lag for p in partitions),
        last_batch=last,
        dead_letter_topic=settings.dead_letter_topic,
        dead_letters=dead_letters,
    )
