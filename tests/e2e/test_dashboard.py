"""The live dashboard in a real browser (Debian's Chromium, headless, through Selenium) on an
API of the test's own pipeline: six hours of the simulator's readings, processed for real,
show every district with its AQI, temperature and humidity and draw a chart; readings produced
after the page loaded reach the live feed and the cards, then are replaced by the stored ones;
the page asks for the API key when the API has one; /docs renders with no network but the
API's. Nothing the browser requests leaves 127.0.0.1."""

from __future__ import annotations

import shutil
import statistics
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from iot_pipeline import aqi
from iot_pipeline.generator.network import DISTRICTS
from iot_pipeline.settings import Settings
from iot_pipeline.storage import make_store

from support.api_process import start_api, stop_api, wait_live
from support.browser import chromium, console_errors, off_loopback, requested_urls
from support.isolation import own_pipeline
from support.kafka_io import produce_readings
from support.processing import process_pending
from support.readings import sample_reading
from support.workers import ROOT, backfill

WAIT = 30.0  # seconds, a generous bound on a wait for a condition, never a sleep
HOURS = 6
INTERVAL = 600  # seconds between the simulator's rounds
SENSORS = len(DISTRICTS) * 2 * 7  # two stations per district (.env), seven metrics each
ARTIFACT = ROOT / ".stack" / "artifacts" / "dashboard.png"
CATEGORY_COLOURS = {name: colour for name, colour, _, _ in aqi.CATEGORIES}


@pytest.fixture(scope="module")
def settings(test_settings: Settings) -> Iterator[Settings]:
    with own_pipeline(test_settings, "dashboard") as own:
        yield own


@pytest.fixture(scope="module")
def districts(settings: Settings) -> set[str]:
    """The simulator's last six hours, stored and aggregated; returns its districts."""
    rounds = HOURS * 3600 // INTERVAL
    # the last round half a minute ago: the sensors are online when the page opens
    start = datetime.now(UTC) - timedelta(seconds=(rounds - 1) * INTERVAL + 30)
    backfill(
        settings, start.isoformat(), rounds * SENSORS, seed=7, interval=INTERVAL, base_faults="none"
    )
    process_pending(settings, "dashboard-backfill")
    store = make_store(settings)
    store.refresh(f"{settings.search_index_prefix}-*")  # searchable now, not in a second
    store.close()
    return {d.name for d in DISTRICTS}


@pytest.fixture(scope="module")
def api(settings: Settings, districts: set[str]) -> Iterator[str]:
    process, url = start_api(settings)
    wait_live(url)  # the hub reads Kafka from its end: what is produced from now on is streamed
    yield url
    stop_api(process)


@pytest.fixture
def browser() -> Iterator[Chrome]:
    with chromium() as driver:
        yield driver


def _wait(driver: Chrome, condition: Any, what: str, seconds: float = WAIT) -> Any:
    return WebDriverWait(driver, seconds, poll_frequency=0.2).until(
        condition, f"{what}: not within {seconds:.0f}s"
    )


def _cards(driver: Chrome) -> dict[str, WebElement]:
    return {
        str(card.get_attribute("data-district")): card
        for card in driver.find_elements(By.CSS_SELECTOR, "#districts [data-district]")
    }


def _filled(card: WebElement, role: str) -> bool:
    return card.find_element(By.CSS_SELECTOR, f'[data-role="{role}"]').get_attribute(
        "data-value"
    ) not in (None, "")


def _rgb(colour: str) -> str:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def _anfa_now(api: str, tag: str) -> tuple[list[dict[str, object]], dict[str, float]]:
    """A temperature and a humidity reading of each Anfa station, stamped now, close to what
    the stations said last (so the batch keeps them valid), and a temperature the cleaner
    calls impossible; with the values the card should show."""
    latest = httpx.get(
        f"{api}/readings/latest",
        params={"district": "Anfa", "metric": ["temperature", "humidity"]},
        timeout=10,
    ).json()["items"]
    shown = {  # a step far below the spike and rate-of-change thresholds, humidity below 100
        metric: round(statistics.fmean(r["value"] for r in latest if r["metric"] == metric), 1)
        + step
        for metric, step in (("temperature", 0.2), ("humidity", -0.2))
    }
    units = {"temperature": "°C", "humidity": "%"}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def reading(station: str, metric: str, value: float, suffix: str = "") -> dict[str, object]:
        return sample_reading(
            event_id=f"{tag}-{station}-{metric}{suffix}",
            sensor_id=f"casa-anfa-{station}-{metric}",
            station_id=f"casa-anfa-{station}",
            metric=metric,
            unit=units[metric],
            value=value,
            event_time=now,
            seq=10_000,
        )

    readings = [
        reading(station, metric, value)
        for station in ("01", "02")
        for metric, value in shown.items()
    ]
    readings.append(reading("01", "temperature", 999.0, "-impossible"))
    return readings, shown


def _chart_drawn(driver: Chrome) -> bool:
    box = driver.find_element(By.ID, "chart")
    canvases = box.find_elements(By.TAG_NAME, "canvas")
    return (
        bool(canvases)
        and canvases[0].size["width"] > 0
        and canvases[0].size["height"] > 0
        and int(box.get_attribute("data-windows") or 0) > 0
    )


def test_the_dashboard_shows_the_city_live_and_charts_it(
    settings: Settings, api: str, districts: set[str], browser: Chrome, tmp_path: Path
) -> None:
    browser.get(f"{api}/dashboard")

    # every district of the data, each with its AQI (colour and category name) and weather
    _wait(browser, lambda d: set(_cards(d)) == districts, "every district shown")
    _wait(
        browser,
        lambda d: all(
            c.find_element(By.CSS_SELECTOR, '[data-role="aqi"]').get_attribute("data-category")
            and _filled(c, "temperature")
            and _filled(c, "humidity")
            for c in _cards(d).values()
        ),
        "every district's AQI, temperature and humidity",
    )
    for name, card in _cards(browser).items():
        badge = card.find_element(By.CSS_SELECTOR, '[data-role="aqi"]')
        category = str(badge.get_attribute("data-category"))
        assert category in CATEGORY_COLOURS, f"{name}: {category!r}"
        assert category in badge.text  # the name as text, not only a colour
        assert badge.value_of_css_property("background-color") in (
            _rgb(CATEGORY_COLOURS[category]),
            _rgb(CATEGORY_COLOURS[category]).replace("rgb(", "rgba(").replace(")", ", 1)"),
        )

    # a chart of hourly aggregates: the default selection, then a district's card
    _wait(browser, _chart_drawn, "a chart drawn")
    _cards(browser)["Anfa"].click()
    _wait(
        browser,
        lambda d: (
            d.find_element(By.ID, "chart").get_attribute("data-key") == "Anfa" and _chart_drawn(d)
        ),
        "Anfa's chart",
    )
    windows = int(browser.find_element(By.ID, "chart").get_attribute("data-windows") or 0)
    assert HOURS - 1 <= windows <= HOURS + 1  # one per hour of data, whatever the minute now

    # new readings: provisional in the feed within seconds, in the card, then stored
    _wait(
        browser,
        lambda d: d.find_element(By.ID, "stream-status").get_attribute("data-state") == "live",
        "the live stream open",
    )
    tag = uuid.uuid4().hex[:8]
    readings, shown = _anfa_now(api, tag)
    produce_readings(settings, readings)
    rows = f'#feed li[data-event-id^="{tag}-"]'
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, rows)) == 5, "the new readings")
    feed = {
        r.get_attribute("data-event-id"): r for r in browser.find_elements(By.CSS_SELECTOR, rows)
    }
    assert {r.get_attribute("data-provisional") for r in feed.values()} == {"true"}
    assert feed[f"{tag}-01-temperature-impossible"].get_attribute("data-valid") == "false"
    anfa_card = '[data-district="Anfa"] [data-role="{}"]'.format
    expected = {
        "temperature": f"{shown['temperature']:.1f} °C",
        "humidity": f"{shown['humidity']:.1f} %",
    }
    _wait(
        browser,
        lambda d: (
            {m: d.find_element(By.CSS_SELECTOR, anfa_card(m)).text for m in expected} == expected
        ),
        f"Anfa's card at {expected} (the impossible reading left out)",
    )
    process_pending(settings, f"batch-{tag}")
    stored = f'{rows}[data-provisional="false"]'
    _wait(
        browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, stored)) == 5, "the stored readings"
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, rows)) == 5  # replaced, not added
    assert (
        browser.find_element(By.CSS_SELECTOR, anfa_card("temperature")).text
        == expected["temperature"]
    )

    # the pipeline: lag and last batch (refreshed every 10 s)
    _wait(
        browser,
        lambda d: (
            d.find_element(By.ID, "pipeline-last-batch").get_attribute("data-batch-id")
            == f"batch-{tag}"
        ),
        "the last batch",
    )
    assert browser.find_element(By.ID, "pipeline-lag").get_attribute("data-value") == "0"

    screenshot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(screenshot))
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshot, ARTIFACT)
    print(f"dashboard screenshot: {ARTIFACT} (and {screenshot})")

    assert not [e for e in console_errors(browser) if "Content Security Policy" in e]
    urls = requested_urls(browser)
    assert any(u.endswith("/stream/readings") for u in urls)
    assert off_loopback(urls) == []


KEY = uuid.uuid4().hex


@pytest.fixture
def keyed_api(settings: Settings, districts: set[str]) -> Iterator[str]:
    """An API of the same pipeline with API_KEY set (before `browser`, so stopped after it)."""
    process, url = start_api(settings, API_KEY=KEY)
    yield url
    stop_api(process)


def test_with_an_api_key_the_dashboard_asks_for_it(
    keyed_api: str, districts: set[str], browser: Chrome
) -> None:
    assert httpx.get(f"{keyed_api}/sensors", timeout=10).status_code == 401
    browser.get(f"{keyed_api}/dashboard")  # the page itself is open
    dialog = browser.find_element(By.ID, "key-dialog")
    _wait(browser, lambda d: dialog.get_attribute("open") is not None, "the key asked for")
    browser.find_element(By.ID, "key-input").send_keys("not-the-key")
    browser.find_element(By.ID, "key-submit").click()
    _wait(
        browser,
        lambda d: (
            dialog.get_attribute("open") is not None
            and "refused" in d.find_element(By.ID, "key-message").text
        ),
        "a wrong key refused",
    )
    browser.find_element(By.ID, "key-input").send_keys(KEY)
    browser.find_element(By.ID, "key-submit").click()
    _wait(browser, lambda d: set(_cards(d)) == districts, "every district, with the key")
    _wait(
        browser,
        lambda d: d.find_element(By.ID, "stream-status").get_attribute("data-state") == "live",
        "the live stream open with the key",
    )
    assert dialog.get_attribute("open") is None
    assert browser.execute_script("return sessionStorage.getItem('iot-pipeline.api-key')") == KEY


def test_the_api_docs_render_offline(api: str, browser: Chrome) -> None:
    operations = sum(
        len(methods)
        for methods in httpx.get(f"{api}/openapi.json", timeout=10).json()["paths"].values()
    )
    browser.get(f"{api}/docs")
    _wait(
        browser,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) == operations,
        f"Swagger UI's {operations} operations",
    )
    urls = requested_urls(browser)
    assert any("/static/vendor/swagger-ui-dist/" in u for u in urls)
    assert off_loopback(urls) == []
