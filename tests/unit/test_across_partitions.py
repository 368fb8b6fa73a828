"""The pending work across partitions, as Redis keeps it: a district window and a buddy slot
come back from their members as they went in, whatever the district's name holds."""

from __future__ import annotations

from iot_pipeline.aggregation.windows import Window
from iot_pipeline.contracts.ranges import OffsetRange, RangeTask
from iot_pipeline.orchestration.batches import range_tasks
from iot_pipeline.processing.across_partitions import _district_member, _district_window


def test_a_pending_district_window_comes_back_as_it_went_in() -> None:
    for district in ("Anfa", "Sidi Bernoussi", "odd|name|with bars", "Aïn Chock"):
        window = Window("district", district, "pm25", "1m", 1_796_428_800)
        assert _district_window(_district_member(window)) == window


def test_the_etl_ranges_leave_what_spans_partitions_to_the_run_and_replays_do_not() -> None:
    from datetime import UTC, datetime

    offsets = [OffsetRange(topic="t", partition=0, start=0, end=10)]
    now = datetime.now(UTC)
    assert all(t.per_run for t in range_tasks("b", now, offsets))
    assert not any(t.per_run for t in range_tasks("b", now, offsets, replay=True))
    # a range sent by hand (or by an older orchestrator) does all its own work
    assert not RangeTask.of("b", now, offsets[0]).per_run
