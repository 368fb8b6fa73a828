"""The cleaner alone on real records thinned to sparser sampling: what a 10-minute, 30-minute
or hourly station would send. Nothing may be flagged, at once or in hindsight (the records
and their provenance: docs/quality.md; the full pipeline at 1 minute:
tests/integration/test_real_data_quality.py)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from iot_pipeline.cleaning import RawRecord, SensorState, clean_batch

from support import real_data

pytestmark = pytest.mark.skipif(
    not real_data.available(),
    reason=f"the real data sets are not in {real_data.dataset_path()}: run `make setup`",
)
END = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.mark.parametrize("minutes", [1, 10, 30, 60])
def test_real_records_at_sparser_sampling_are_not_flagged(minutes: int) -> None:
    thinned = sorted(
        (r for r in real_data.readings(END) if int(str(r["event_time"])[14:16]) % minutes == 0),
        key=lambda r: str(r["event_time"]),
    )
    records = [
        RawRecord(json.dumps(r).encode(), str(r["sensor_id"]), 0, n) for n, r in enumerate(thinned)
    ]
    states: dict[str, SensorState] = {}
    flags: Counter[str] = Counter()
    for start in range(0, len(records), 5000):
        result = clean_batch(records[start : start + 5000], states, END + timedelta(hours=1))
        assert not result.dead_letters
        for clean in result.readings:
            flags.update(clean.flags)
            flags.update(f"{h.flag} (in hindsight)" for h in clean.hindsight)
    print(f"every {minutes} min: {len(records)} readings, flags {dict(flags)}")
    assert len(records) >= 90_720 // minutes
    assert not flags
