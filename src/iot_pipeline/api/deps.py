"""What the routes share: the app's store, run-state client and settings, parameter checks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import redis.asyncio
from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError

from iot_pipeline import indices
from iot_pipeline.api.upstream import KafkaPositions
from iot_pipeline.settings import Settings
from iot_pipeline.storage import AsyncSearchStore


def get_store(request: Request) -> AsyncSearchStore:
    store: AsyncSearchStore = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_state_client(request: Request) -> redis.asyncio.Redis:
    client: redis.asyncio.Redis = request.app.state.run_state
    return client


def get_kafka(request: Request) -> KafkaPositions:
    kafka: KafkaPositions = request.app.state.kafka
    return kafka


Store = Annotated[AsyncSearchStore, Depends(get_store)]
Conf = Annotated[Settings, Depends(get_settings)]
StateClient = Annotated[redis.asyncio.Redis, Depends(get_state_client)]
Kafka = Annotated[KafkaPositions, Depends(get_kafka)]


def readings_pattern(settings: Settings) -> str:
    return indices.readings_pattern(settings.search_index_prefix)


def invalid(parameter: str, message: str) -> RequestValidationError:
    """A 422 naming the parameter, for checks the signature cannot express."""
    return RequestValidationError(
        [{"loc": ("query", parameter), "msg": message, "type": "value_error"}]
    )


def check_limit(settings: Settings, limit: int) -> int:
    if limit > settings.api_max_limit:
        raise invalid("limit", f"at most {settings.api_max_limit}")
    return limit


def check_range(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end <= start:
        raise invalid("end", "must be after start")


def check_values(parameter: str, values: list[str] | None, longest: int = 64) -> None:
    for value in values or []:
        if not 1 <= len(value) <= longest:
            raise invalid(parameter, f"each value is 1 to {longest} characters")


def key_required(why: str) -> Callable[[Settings], None]:
    """A dependency refusing (403) a write on a deployment without an API key, where anyone
    could call it; `why` says what the write changes."""

    def require_key_configured(settings: Conf) -> None:
        if not settings.api_key.get_secret_value():
            raise HTTPException(
                status_code=403,
                detail=f"{why}, so it needs an API key: set API_KEY (and send it in "
                "X-API-Key); reading stays open",
            )

    return require_key_configured


def not_found(what: str) -> HTTPException:
    return HTTPException(status_code=404, detail=what)


def source(hit: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = hit["_source"]
    return doc
