"""The reading schema (and its exported JSON Schema) and the simulator's option checks."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from iot_pipeline.generator.cli import build_parser, config_from_args
from iot_pipeline.generator.runner import GeneratorError
from iot_pipeline.schema import SensorReading, json_schema
from iot_pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "schema_version": 1,
    "event_id": "a-1-2",
    "sensor_id": "casa-anfa-01-no2",
    "station_id": "casa-anfa-01",
    "district": "Anfa",
    "metric": "no2",
    "value": 41.5,
    "unit": "µg/m³",
    "event_time": "2026-11-28T08:00:00.000Z",
    "seq": 2,
    "lat": 33.59,
    "lon": -7.65,
    "battery_pct": 80.0,
    "firmware": "3.0.2",
}


def test_exported_json_schema_is_current() -> None:
    committed = json.loads((ROOT / "docs/schema/sensor_reading.v1.json").read_text())
    assert committed == json_schema(), "regenerate: python -m iot_pipeline.schema > docs/..."


@pytest.mark.parametrize(
    "change",
    [
        {"value": "41.5"},
        {"value": None},
        {"seq": "2"},
        {"event_time": 1700000000},
        {"event_time": "2026-11-28T08:00:00"},  # no time zone
        {"metric": "noise"},
        {"debug": 1},
        {"schema_version": 2},
    ],
)
def test_schema_rejects_wrong_types_unknown_fields_and_naive_times(change: dict) -> None:  # type: ignore[type-arg]
    SensorReading.model_validate_json(json.dumps(GOOD))
    with pytest.raises(ValidationError):
        SensorReading.model_validate_json(json.dumps({**GOOD, **change}))


def _config(*argv: str):  # type: ignore[no-untyped-def]
    return config_from_args(build_parser().parse_args(list(argv)), Settings())


def test_backfill_options() -> None:
    config = _config("backfill", "--start", "2026-11-01", "--duration", "3600", "--seed", "3")
    assert config.end is not None
    assert config.start is not None
    assert (config.end - config.start).total_seconds() == 3600
    assert config.seed == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["backfill", "--end", "2026-11-02"], "needs --start"),
        (["backfill", "--start", "2026-11-01"], "--end, --duration or --count"),
        (["backfill", "--start", "2026-11-02", "--end", "2026-11-01"], "not after"),
        (["backfill", "--start", "2026-11-01", "--count", "5", "--rate", "10"], "--rate"),
        (["live", "--start", "2026-11-01"], "for backfill"),
        (["live", "--fault-rate", "spike=2"], "less than or equal to 1"),
    ],
)
def test_bad_option_combinations_are_explained(argv: list[str], message: str) -> None:
    with pytest.raises(GeneratorError, match=message):
        _config(*argv)


def test_rate_sets_the_interval() -> None:
    config = _config("live", "--rate", "392", "--stations-per-district", "2")
    assert config.interval == pytest.approx(0.5)  # 196 sensors per round


def test_coarse_sensors_are_a_fraction() -> None:
    assert _config("live", "--coarse", "0.5").coarse_fraction == 0.5
    assert _config("live").coarse_fraction == 0.0
    with pytest.raises(SystemExit):
        _config("live", "--coarse", "1.5")
