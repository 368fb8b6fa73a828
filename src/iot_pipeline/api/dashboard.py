"""The live city dashboard at `/dashboard`: one page whose script and style sheet ship in the
package (`static/dashboard/`), with charts drawn by uPlot, vendored like the docs' assets.

The page holds no data, so it is open like `/docs`. Everything it shows comes from the API's
own routes, which the browser calls with `X-API-Key` when the deployment sets a key (the
page asks for it). A strict Content-Security-Policy comes with the page: scripts, styles and
requests from this origin only, and nothing inline.
"""

from __future__ import annotations

import hashlib
import html
import logging
from functools import cache
from pathlib import Path
from string import Template

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from iot_pipeline import aqi
from iot_pipeline.api import docs_pages
from iot_pipeline.api.problems import problem

log = logging.getLogger("iot_pipeline.api")
PAGE = Path(__file__).parent / "dashboard.html"
OWN = docs_pages.STATIC / "dashboard"  # the page's script and style sheet
OWN_FILES = ("dashboard.js", "dashboard.css")
UPLOT_FILES = ("uplot/uPlot.iife.min.js", "uplot/uPlot.min.css")  # under docs_pages.VENDOR
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def missing_assets() -> list[str]:
    """The uPlot files the page needs that `make setup` has not vendored."""
    return [name for name in UPLOT_FILES if not (docs_pages.VENDOR / name).is_file()]


def _versioned(url: str, path: Path) -> str:
    # a digest in the URL: a browser never keeps an old script after an upgrade
    return f"{url}?v={hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"


def _legend() -> str:
    return "\n".join(
        f'      <li data-color="{colour}"><span class="swatch"></span>{html.escape(name)} '
        f"<small>{low}-{high}</small></li>"
        for name, colour, low, high in aqi.CATEGORIES
    )


@cache
def render_page() -> str:
    """The page, with its assets' URLs (relative: they follow the API's root path) and the
    AQI legend from the standard's table."""
    static = docs_pages.STATIC_URL.lstrip("/")
    return Template(PAGE.read_text()).substitute(
        js=_versioned(f"{static}/dashboard/dashboard.js", OWN / "dashboard.js"),
        css=_versioned(f"{static}/dashboard/dashboard.css", OWN / "dashboard.css"),
        uplot_js=f"{static}/vendor/{UPLOT_FILES[0]}",
        uplot_css=f"{static}/vendor/{UPLOT_FILES[1]}",
        legend=_legend(),
    )


def install(app: FastAPI) -> None:
    """Serve `/dashboard` (its files are under `/static`, which docs_pages mounts)."""
    if missing := missing_assets():
        log.warning(
            "dashboard assets missing (%s): /dashboard answers 503; run `make setup`",
            ", ".join(missing),
        )

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard(request: Request) -> Response:
        if missing_assets():
            return problem(
                request,
                503,
                "the dashboard's chart library (uPlot) is not installed: run `make setup` "
                "(it vendors web/assets.json into the package)",
                title="Dashboard assets missing",
            )
        return HTMLResponse(render_page(), headers=HEADERS)
