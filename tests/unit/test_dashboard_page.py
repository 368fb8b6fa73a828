"""The dashboard page: open without the key (its data is not), strict about what it loads,
shipped with the package, and saying how to get uPlot when it is missing."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from iot_pipeline import aqi
from iot_pipeline.api import dashboard, docs_pages
from iot_pipeline.api.app import create_app
from iot_pipeline.settings import Settings

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "src" / "iot_pipeline"


def _get(*paths: str, api_key: str = "") -> list[httpx.Response]:
    app = create_app(Settings(app_env="local", api_key=api_key))

    async def get() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return [await client.get(path) for path in paths]

    return asyncio.run(get())


class _Page(HTMLParser):
    """The page's scripts (source and inline text), linked URLs, legend and ids."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.scripts: list[tuple[str | None, str]] = []
        self.urls: list[str] = []
        self.legend: list[str] = []
        self.ids: set[str] = set()
        self.styled: list[str] = []  # elements with an inline style attribute
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            self.scripts.append((found.get("src"), ""))
        if tag in ("script", "link") and (url := found.get("src") or found.get("href")):
            self.urls.append(url)
        if tag == "li" and found.get("data-color"):
            self.legend.append(str(found["data-color"]))
        if found.get("id"):
            self.ids.add(str(found["id"]))
        if "style" in found:
            self.styled.append(tag)

    def handle_data(self, data: str) -> None:
        if self.lasttag == "script" and data.strip() and self.scripts:
            source, _ = self.scripts[-1]
            self.scripts[-1] = (source, data)


def test_the_page_is_open_but_its_data_needs_the_key() -> None:
    page, sensors = _get("/dashboard", "/sensors", api_key="secret")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert sensors.status_code == 401


def test_the_page_loads_only_its_own_files_and_nothing_inline() -> None:
    (page,) = _get("/dashboard")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    parsed = _Page(page.text)
    assert parsed.scripts
    assert all(source and not text for source, text in parsed.scripts)  # no inline script
    assert parsed.styled == []  # no inline style either
    assert all(url.startswith(("static/", "data:")) for url in parsed.urls)  # relative, local
    # every file the page names is served
    files = [url.split("?")[0] for url in parsed.urls if url.startswith("static/")]
    for response in _get(*(f"/{f}" for f in files)):
        assert response.status_code == 200, response.url


def test_the_page_has_the_ids_the_browser_test_reads() -> None:
    (page,) = _get("/dashboard")
    assert {
        "districts",
        "feed",
        "chart",
        "chart-key",
        "chart-metric",
        "chart-range",
        "pipeline-lag",
        "pipeline-last-batch",
        "stream-status",
        "key-dialog",
        "key-input",
    } <= _Page(page.text).ids


def test_the_legend_is_the_standards_categories() -> None:
    (page,) = _get("/dashboard")
    assert _Page(page.text).legend == [colour for _, colour, _, _ in aqi.CATEGORIES]
    for name, *_ in aqi.CATEGORIES:
        assert name in page.text  # the category's name as text, not only its colour


def test_without_uplot_the_page_says_to_run_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docs_pages, "VENDOR", tmp_path)
    (response,) = _get("/dashboard")
    assert response.status_code == 503
    assert response.json()["title"] == "Dashboard assets missing"
    assert "make setup" in response.json()["detail"]


def test_uplot_is_pinned_and_the_page_ships_with_the_package() -> None:
    pins = json.loads((ROOT / "web" / "assets.json").read_text())
    vendored = {f"{p['name']}/{Path(f).name}" for p in pins["packages"] for f in p["files"]}
    assert set(dashboard.UPLOT_FILES) <= vendored
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["iot_pipeline"]
    own = [dashboard.PAGE, *(dashboard.OWN / name for name in dashboard.OWN_FILES)]
    for path in own:
        relative = path.relative_to(PACKAGE).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative
