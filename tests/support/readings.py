"""A valid reading as the simulator writes it, to vary one field at a time in tests."""

from __future__ import annotations


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
