"""The FastAPI application: routers, errors as problem details, observability, auth, CORS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import PlainTextResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware

from iot_pipeline import __version__
from iot_pipeline.api import (
    dashboard,
    docs_pages,
    edge,
    live,
    observability,
    pipeline_metrics,
    problems,
)
from iot_pipeline.api.routers import (
    aggregates,
    aqi,
    health,
    overrides,
    pipeline,
    readings,
    sensors,
    stream,
)
from iot_pipeline.api.upstream import KafkaPositions, make_state_client
from iot_pipeline.errors import ConfigurationError
from iot_pipeline.settings import Settings
from iot_pipeline.storage import AsyncSearchStore, make_async_store

DESCRIPTION = """
Raw (cleaned) and aggregated readings of Casablanca's sensor network, live and historical.

* Times are ISO 8601; without an offset they are taken as UTC.
* Lists are paginated with an opaque `cursor` (`next_cursor` of the previous page), stable
  while new readings arrive.
* Errors are RFC 9457 problem details (`application/problem#json`) with the request id.
* When the deployment sets an API key, send it in the `X-API-Key` header (all routes but
  `/health`, `/health/pipeline` and `/ready`). Managing `/qc/overrides` and declaring
  `/sensors/{sensor_id}/metadata` need one (403 without).
""".replace("problem#json", "problem+json")


class ApiKeyRequired(ConfigurationError, ValueError):
    """The API would serve every route without a key outside a local deployment."""


def create_app(settings: Settings | None = None, store: AsyncSearchStore | None = None) -> FastAPI:
    """The API for these settings (default: from the environment)."""
    settings = settings or Settings()
    if settings.app_env != "local" and not settings.api_key.get_secret_value():
        raise ApiKeyRequired(
            f"API_KEY is empty with APP_ENV={settings.app_env}: every route would be open. "
            "Set API_KEY (compose: `make secrets` writes secrets/api_key), or APP_ENV=local "
            "for a development machine."
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # created inside the server's event loop: the async clients bind to it
        app.state.store = store or make_async_store(settings)
        app.state.run_state = make_state_client(settings)
        app.state.live = live.LiveHub(settings) if settings.api_live_enabled else None
        if app.state.live is not None:
            await live.start(app.state.live)
        try:
            yield
        finally:
            if app.state.live is not None:
                await app.state.live.stop()
            await app.state.run_state.aclose()
            kafka.close()
            if store is None:
                await app.state.store.close()

    app = FastAPI(
        title="IoT sensor pipeline API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from the package's own assets (docs_pages), not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    kafka = app.state.kafka = KafkaPositions(settings, settings.api_status_cache_seconds)
    problems.install(app)
    docs_pages.install(app)
    dashboard.install(app)  # after docs_pages: the page's files are under its /static
    registry = observability.install(app)
    origins = [o.strip() for o in settings.api_cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET"],
            allow_headers=["X-API-Key", "X-Request-ID", "Last-Event-ID"],
            expose_headers=["X-Request-ID"],
        )
    # the edge, outermost last: requests in flight, Host, the body limit; all before routing
    # and the key check
    app.add_middleware(edge.SecurityHeaders)
    app.add_middleware(edge.BodyLimit, limit=settings.api_max_body_bytes)
    app.add_middleware(
        TrustedHostMiddleware, allowed_hosts=edge.allowed_hosts(settings.api_allowed_hosts)
    )
    app.add_middleware(edge.ConcurrencyLimit, limit=settings.api_limit_concurrency)
    protected = [Depends(observability.require_api_key(settings.api_key.get_secret_value()))]
    lags = pipeline_metrics.LagReader(kafka, settings.kafka_sensor_data_topic)
    app.include_router(health.router)
    for module in (sensors, readings, aggregates, aqi, stream, pipeline, overrides):
        app.include_router(module.router, dependencies=protected)

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics (text exposition format)",
        description="One Redis round trip, the Kafka positions the process reuses for "
        "API_STATUS_CACHE_SECONDS (a scrape waits at most "
        f"{pipeline_metrics.LAG_TIMEOUT_SECONDS:.0f} s for them) and the process's own counters.",
        dependencies=protected,
        response_class=PlainTextResponse,
    )
    async def metrics(request: Request) -> Response:
        own = await pipeline_metrics.scrape(request.app.state.run_state, lags, settings)
        own += pipeline_metrics.exposition(live.metric_families(request.app.state.live))
        return observability.metrics_response(registry, own)

    return app
