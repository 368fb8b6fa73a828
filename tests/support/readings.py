"""A valid reading as the simulator writes it, to vary one field at a time in tests."""

from __future__ import annotations

from datetime import datetime


def sample_reading(**change: object) -> dict[str, object]:
    """A schema-valid temperature reading of one Anfa sensor, with `change` applied."""
    base: dict[str, object] = {
        "schema_version": 1,
        "event_id": "e-1",
        "sensor_id": "casa-anfa-01-temperature",
        "station_id": "casa-anfa-01",
        "district": "Anfa",
        "metric": "temperature",
        "value": 21.5,
        "unit": "°C",
        "event_time": "2026-11-28T11:59:00.000Z",
        "seq": 1,
        "lat": 33.59,
        "lon": -7.65,
        "battery_pct": 80.0,
        "firmware": "3.0.2",
    }
    return {**base, **change}


def pm_reading(
    station: str,
    metric: str,
    value: float,
    at: datetime,
    n: int = 0,
    district: str = "Xm",
    event_id: str | None = None,
) -> dict[str, object]:
    """A particulate reading (µg/m³, `metric` pm25 or pm10) of one station's sensor."""
    return sample_reading(
        event_id=event_id or f"{station}-{metric}-{n}",
        sensor_id=f"{station}-{metric}",
        station_id=station,
        district=district,
        metric=metric,
        unit="µg/m³",
        value=value,
        seq=n,
        event_time=at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    )
