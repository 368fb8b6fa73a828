"""The API's documentation pages (`/docs`, `/redoc`) with their assets served by the API
itself: no CDN, so they render on an offline or air-gapped deployment.

The assets are npm distributions of Swagger UI and ReDoc pinned in `web/assets.json` and
copied into `static/vendor/` by `make setup` (and the API's image build). Without them the
pages answer 503 saying how to get them, instead of rendering blank.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from iot_pipeline.api.problems import problem

log = logging.getLogger("iot_pipeline.api")
STATIC = Path(__file__).parent / "static"
VENDOR = STATIC / "vendor"
STATIC_URL = "/static"
_ASSETS = {
    "swagger_js": "swagger-ui-dist/swagger-ui-bundle.js",
    "swagger_css": "swagger-ui-dist/swagger-ui.css",
    "favicon": "swagger-ui-dist/favicon-32x32.png",
    "redoc_js": "redoc/redoc.standalone.js",
}


def missing_assets() -> list[str]:
    """The vendored files the pages need that are not there."""
    return [name for name in _ASSETS.values() if not (VENDOR / name).is_file()]


def install(app: FastAPI) -> None:
    """Serve `/static` and the two documentation pages (create the app with docs_url=None,
    redoc_url=None)."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC, check_dir=False), name="static")
    if missing := missing_assets():
        log.warning(
            "API docs assets missing (%s): /docs and /redoc answer 503; run `make setup`",
            ", ".join(missing),
        )

    def url(request: Request, name: str) -> str:
        root = request.scope.get("root_path", "")
        return f"{root}{STATIC_URL}/vendor/{_ASSETS[name]}"

    def unavailable(request: Request) -> Response | None:
        if missing_assets():
            return problem(
                request,
                503,
                "the documentation assets are not installed: run `make setup` "
                "(it vendors web/assets.json into the package)",
                title="Docs assets missing",
            )
        return None

    openapi = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        return unavailable(request) or get_swagger_ui_html(
            openapi_url=f"{root}{openapi}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=url(request, "swagger_js"),
            swagger_css_url=url(request, "swagger_css"),
            swagger_favicon_url=url(request, "favicon"),
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        return unavailable(request) or get_redoc_html(
            openapi_url=f"{root}{openapi}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=url(request, "redoc_js"),
            redoc_favicon_url=url(request, "favicon"),
            with_google_fonts=False,
        )
