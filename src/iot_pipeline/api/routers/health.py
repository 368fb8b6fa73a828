"""Liveness, readiness and pipeline health (open even when an API key is configured: for
probes). `/ready` says whether this API can answer; `/health/pipeline` whether the ETL keeps up."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from iot_pipeline.api.deps import Conf, Kafka, StateClient, Store
from iot_pipeline.api.models.health import Health, PipelineHealth, Ready, StalledPartition
from iot_pipeline.api.models.pipeline import settle_failing, store_refusal
from iot_pipeline.api.models.problems import problem_schema
from iot_pipeline.api.upstream import read_run_state
from iot_pipeline.contracts.run_state import partition_health, settle_stalled

# the probes share no prefix: `/health`, `/ready`, `/health/pipeline` (in this order)
router = APIRouter(prefix="", tags=["health"])


@router.get(
    "/health",
    response_model=Health,
    summary="The process is alive",
    description="Answers from the process alone: no upstream call.",
)
async def health() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Ready,
    summary="The search store answers",
    description="One ping of the search store, within its client timeout.",
    responses={503: {"description": "The search store is down", **problem_schema()}},
)
async def ready(store: Store) -> Ready:
    if not await store.ping():
        raise HTTPException(
            status_code=503, detail="the search store does not answer", headers={"Retry-After": "5"}
        )
    return Ready(status="ready", engine=store.engine)


@router.get(
    "/health/pipeline",
    response_model=PipelineHealth,
    summary="The ETL keeps up: no partition has lag without a recent commit",
    description="One Redis round trip and the Kafka positions the process reuses for "
    "API_STATUS_CACHE_SECONDS (one long-lived consumer, never one per request).",
    responses={
        503: {
            "description": "A partition is stalled or the search engine refuses the "
            "pipeline's writes (application/json, the same body as 200), or Kafka or Redis is "
            "down (a problem)",
            "model": PipelineHealth,
            **problem_schema(),
        }
    },
)
async def pipeline_health(
    settings: Conf, state_client: StateClient, kafka: Kafka
) -> PipelineHealth | JSONResponse:
    state = await read_run_state(state_client, settings, recent=1)
    group = await run_in_threadpool(kafka.read, settings.kafka_sensor_data_topic)
    lags = {p.partition: p.lag for p in group}
    stalled = [
        StalledPartition(
            partition=h.partition, lag=h.lag, last_commit_age_seconds=h.last_commit_age
        )
        for h in partition_health(state, lags, settings.etl_stall_seconds)
        if h.stalled and h.last_commit_age is not None
    ]
    after = settings.etl_stall_seconds
    refusal = store_refusal(state.refusal)
    failing = state.settle_failure if settle_stalled(state, after) else None
    if refusal is not None:
        status = "refused"
        detail = (
            f"the search engine refuses the pipeline's writes (since {refusal.since:%H:%M:%SZ},"
            f" {len(refusal.ranges)} range(s) held, nothing dead-lettered): {refusal.error}"
        )
    elif stalled:
        status = "stalled"
        detail = f"{len(stalled)} partition(s) with lag and no commit for more than {after}s"
    elif failing is not None:
        status = "stalled"
        detail = (
            f"the settle across partitions (district windows, buddy check) has failed since "
            f"{datetime.fromtimestamp(failing.since, UTC):%H:%M:%SZ}, "
            f"{state.across_waiting} item(s) waiting: {failing.error}"
        )
    else:
        status, detail = "ok", f"every partition with lag committed within {after}s"
    answer = PipelineHealth(
        status=status,
        detail=detail,
        stall_after_seconds=after,
        stalled_partitions=stalled,
        total_lag=sum(lags.values()),
        consecutive_failed_runs=state.consecutive_failed_runs,
        store_refusal=refusal,
        across_partitions_waiting=state.across_waiting,
        settle_failing=settle_failing(state.settle_failure),
    )
    if status != "ok":
        return JSONResponse(answer.model_dump(mode="json"), status_code=503)
    return answer
