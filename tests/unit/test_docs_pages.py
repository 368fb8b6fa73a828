"""The documentation pages depend on vendored assets: without them they say how to get them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from iot_pipeline.api import docs_pages
from iot_pipeline.api.app import create_app
from iot_pipeline.settings import Settings


def _get(path: str) -> httpx.Response:
    app = create_app(Settings(app_env="local"))

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.get(path)

    return asyncio.run(get())


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_without_the_assets_the_pages_say_to_run_setup(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docs_pages, "VENDOR", tmp_path)
    response = _get(page)
    assert response.status_code == 503
    assert response.json()["title"] == "Docs assets missing"
    assert "make setup" in response.json()["detail"]


def test_the_pinned_assets_are_the_ones_the_pages_load() -> None:
    import json

    pins = json.loads((Path(__file__).parents[2] / "web" / "assets.json").read_text())
    vendored = {f"{p['name']}/{Path(f).name}" for p in pins["packages"] for f in p["files"]}
    assert set(docs_pages._ASSETS.values()) <= vendored
    assert all(p["integrity"].startswith("sha512-") for p in pins["packages"])
