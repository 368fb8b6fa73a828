"""Liveness and readiness (open even when an API key is configured: for probes)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from iot_pipeline.api.deps import Store
from iot_pipeline.api.models import Health, Ready, problem_schema

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="The process is alive")
async def health() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Ready,
    summary="The search store answers",
    responses={503: {"description": "The search store is down", **problem_schema()}},
)
async def ready(store: Store) -> Ready:
    if not await store.ping():
        raise HTTPException(
            status_code=503, detail="the search store does not answer", headers={"Retry-After": "5"}
        )
    return Ready(status="ready", engine=store.engine)
