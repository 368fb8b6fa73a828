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
