"""Window maths."""

from datetime import UTC, datetime

import pytest

from iot_pipeline.aggregation import Window, aggregate_id, touched_windows
from iot_pipeline.aggregation.windows import window_start
from iot_pipeline.cleaning import RawRecord, clean_batch
from iot_pipeline.indices import aggregates_index


@pytest.mark.parametrize(
    ("instant", "resolution", "start"),
    [
        ("2026-11-28T08:17:42Z", "1m", "2026-11-28T08:17:00Z"),
        ("2026-11-28T08:17:42Z", "1h", "2026-11-28T08:00:00Z"),
        ("2026-11-28T23:59:59Z", "1d", "2026-11-28T00:00:00Z"),
        ("2026-11-28T08:00:00Z", "1h", "2026-11-28T08:00:00Z"),
    ],
)
def test_tumbling_windows_are_utc_aligned(instant: str, resolution: str, start: str) -> None:
    epoch = datetime.fromisoformat(instant).timestamp()
    assert window_start(epoch, resolution) == datetime.fromisoformat(start).timestamp()


def test_a_reading_touches_one_window_per_scope_and_resolution() -> None:
    """Touched: the 1-minute windows per scope; their parents are 1 h and 1 d."""
    raw = (
        b'{"schema_version":1,"event_id":"e","sensor_id":"s-no2","station_id":"s",'
        b'"district":"Anfa","metric":"no2","value":40.0,"unit":"\xc2\xb5g/m\xc2\xb3",'
        b'"event_time":"2026-11-28T08:17:42.000Z","seq":1,"lat":33.5,"lon":-7.6,'
        b'"battery_pct":50.0,"firmware":"3.0.2"}'
    )
    (reading,) = clean_batch([RawRecord(raw, "t", 0, 0)], {}, datetime.now(UTC)).readings
    windows = touched_windows([reading])
    assert len(windows) == 2
    assert {w.scope for w in windows} == {"sensor", "district"}
    hour = datetime(2026, 11, 28, 8, tzinfo=UTC).timestamp()
    minute = Window("district", "Anfa", "no2", "1m", int(hour) + 17 * 60)
    assert minute in windows
    assert minute.parent() == Window("district", "Anfa", "no2", "1h", int(hour))
    assert minute.parent().parent().resolution == "1d"
    assert aggregate_id(Window("sensor", "s-no2", "no2", "1h", int(hour))) == (
        "sensor:s-no2:no2:1h:2026-11-28T08:00:00Z"
    )


def test_children_tile_their_parent() -> None:
    day = Window("sensor", "s", "no2", "1d", int(datetime(2026, 11, 28, tzinfo=UTC).timestamp()))
    hours = day.children()
    assert len(hours) == 24
    assert hours[0].start == day.start
    assert hours[-1].end == day.end
    minutes = hours[5].children()
    assert len(minutes) == 60
    assert all(m.parent() == hours[5] for m in minutes)


@pytest.mark.parametrize(
    ("resolution", "name"),
    [
        ("1m", "p-agg-1m-2026.11.28"),
        ("1h", "p-agg-1h-2026.11"),
        ("1d", "p-agg-1d-2026"),
    ],
)
def test_aggregate_indices_are_time_bucketed_per_resolution(resolution: str, name: str) -> None:
    start = int(datetime(2026, 11, 28, 8, 17, tzinfo=UTC).timestamp())
    assert aggregates_index("p", resolution, start) == name


def test_a_sensor_minute_from_the_readings_in_hand_counts_as_the_engine_does() -> None:
    """`from_readings`: what `collect_minutes` would find for a minute whose readings are all
    in hand: valid values' statistics, every reading counted, each distinct flag once per
    reading, the verdicts, and the largest interval a reading carries."""
    from dataclasses import replace

    from iot_pipeline.aggregation.minutes import from_readings
    from iot_pipeline.vocabulary import SPIKE, UNIT_CONVERTED

    def raw(n: int, value: float, second: int, sensor: str = "s-no2") -> RawRecord:
        body = (
            f'{{"schema_version":1,"event_id":"e{n}","sensor_id":"{sensor}","station_id":"s",'
            f'"district":"Anfa","metric":"no2","value":{value},"unit":"µg/m³",'
            f'"event_time":"2026-11-28T08:17:{second:02d}.000Z","seq":{n},"lat":33.5,'
            f'"lon":-7.6,"battery_pct":50.0,"firmware":"3.0.2"}}'
        )
        return RawRecord(body.encode(), "t", 0, n)

    records = [raw(0, 40.0, 1), raw(1, 44.0, 20), raw(2, 42.0, 40), raw(3, 41.0, 50)]
    cleaned = clean_batch([*records, raw(4, 9.0, 5, "x")], {}, datetime.now(UTC)).readings
    a, b, c, d, other = cleaned
    readings = [
        replace(a, interval=20.0),
        replace(b, flags=(UNIT_CONVERTED,), interval=30.0),  # flagged, still valid
        replace(c, flags=(SPIKE, SPIKE, UNIT_CONVERTED)),  # invalid, a flag repeated
        d,
        other,
    ]
    found = from_readings(readings)
    minute = int(datetime(2026, 11, 28, 8, 17, tzinfo=UTC).timestamp())
    assert set(found) == {
        Window("sensor", "s-no2", "no2", "1m", minute),
        Window("sensor", "x", "no2", "1m", minute),
    }
    stats = found[Window("sensor", "s-no2", "no2", "1m", minute)]
    assert stats.readings == 4
    assert stats.invalid == 1
    (moments,) = stats.parts
    assert (moments.count, moments.sum, moments.min, moments.max) == (3, 125.0, 40.0, 44.0)
    assert moments.m2 == pytest.approx(8.0 + 2 / 3)  # deviations from 41 2/3
    assert stats.quality == {UNIT_CONVERTED: 2, SPIKE: 1}
    assert stats.qc is not None
    assert sum(stats.qc.values()) == 4
    assert stats.qc[readings[2].qc] >= 1
    assert stats.intervals == {"s-no2": 30.0}
    assert stats.sensors is None  # a sensor window names no reporting sensors
