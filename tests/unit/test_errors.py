"""One error hierarchy: the drawing in `iot_pipeline.errors` is the real tree, every exception
the package defines belongs to it, and each side (worker, API) acts on its two branches."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import re

import httpx
import pytest
import redis
from fastapi import FastAPI

import iot_pipeline
from iot_pipeline import errors
from iot_pipeline.errors import (
    KafkaUnavailable,
    OffsetsError,
    PermanentError,
    PipelineError,
    RedisUnavailable,
    TransientError,
    TransientStoreError,
)

_DRAWN = re.compile(r"^ {4}(?P<indent>(?:│   |    )*)(?:├── |└── )?(?P<name>[A-Z]\w+)(?:\s{2,}|$)")


def _drawing() -> list[tuple[int, str]]:
    """(depth, class name) for each line of the docstring's tree."""
    rows = []
    for line in (errors.__doc__ or "").splitlines():
        match = _DRAWN.match(line)
        if match:
            depth = len(match["indent"]) // 4 + (1 if "── " in line else 0)
            rows.append((depth, match["name"]))
    return rows


def test_the_drawing_is_the_real_tree() -> None:
    rows = _drawing()
    assert rows[0] == (0, "PipelineError")
    parents: dict[int, str] = {}
    for depth, name in rows:
        cls = getattr(errors, name)
        parents[depth] = name
        if depth:
            assert getattr(errors, parents[depth - 1]) in cls.__bases__, name
    drawn = {name for _, name in rows}
    defined = {n for n, c in vars(errors).items() if isinstance(c, type)} - {"StoreError"}
    assert drawn == defined


def _package_exceptions() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(iot_pipeline.__path__, "iot_pipeline."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == info.name:
                found.append(cls)
    return found


def test_every_exception_of_the_package_is_a_pipeline_error() -> None:
    found = _package_exceptions()
    assert len(found) >= 20  # the walk did reach the modules
    strays = [f"{c.__module__}.{c.__name__}" for c in found if not issubclass(c, PipelineError)]
    assert strays == []
    # and each is on exactly one branch: the worker and the API decide by it
    both = [c for c in found if issubclass(c, TransientError) and issubclass(c, PermanentError)]
    assert both == []


def test_a_redis_outage_during_a_range_is_retried_as_transient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from iot_pipeline.worker import tasks

    def lost(*_: object) -> dict[str, object]:
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379")

    monkeypatch.setattr(tasks, "_process", lost)
    # a task option Celery sets on the task class, which celery-types does not declare
    assert getattr(tasks.process_range_task, "autoretry_for", None) == (TransientError,)
    # called directly, the retry re-raises the translated error
    with pytest.raises(RedisUnavailable, match="Redis does not answer"):
        tasks.process_range_task({})


@pytest.mark.parametrize(
    ("error", "title"),
    [
        (OffsetsError("commit refused"), "Kafka unavailable"),
        (KafkaUnavailable("no broker"), "Kafka unavailable"),
        (RedisUnavailable("down"), "Redis unavailable"),
        (TransientStoreError("down"), "Search store unavailable"),
    ],
)
def test_the_api_names_the_dependency_that_is_down(error: Exception, title: str) -> None:
    from iot_pipeline.api.problems import install

    app = FastAPI()
    install(app)

    @app.get("/x")
    def fail() -> None:
        raise error

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.get("/x")

    response = asyncio.run(get())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["title"] == title
