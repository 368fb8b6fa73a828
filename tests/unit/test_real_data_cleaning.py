"""The cleaner alone on real records (datasets/real.json): six stations, three sampled every
minute and three hourly stations of national networks with coarse resolutions (whole degF
written in degC, whole degC, whole percent). Every record as it is, and the 1-minute ones
thinned to what a 10-minute, 30-minute or hourly station would send.

Genuine readings must keep their verdict: at most 0.1% invalidated and 1% questioned
overall, at most 0.5% invalidated for any one sensor, flags found in hindsight and by the
neighbours included. The figures are printed per sensor. Then the arrival order: the same
records shuffled (every reading up to six hours late, across batches) get the same flags and
verdicts. The full pipeline: tests/integration/test_real_data_quality.py."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from iot_pipeline.cleaning import CleanReading, RawRecord, SensorState, clean_batch, qc_verdict
from iot_pipeline.vocabulary import INVALIDATING, QC_CHECKED, QC_QUESTIONED, QC_SCREENED

from support import real_data
from support.hindsight import Neighbourhood, with_hindsight

pytestmark = pytest.mark.skipif(
    not real_data.available(),
    reason=f"the real data sets are not in {real_data.dataset_path()}: run `make setup`",
)
END = datetime(2026, 11, 20, tzinfo=UTC)
MAX_INVALID = 0.001
MAX_QUESTIONED = 0.01
MAX_INVALID_PER_SENSOR = 0.005


def _clean(readings: list[dict[str, object]]) -> tuple[list[CleanReading], list[list[str]]]:
    records = [
        RawRecord(json.dumps(r).encode(), str(r["sensor_id"]), 0, n) for n, r in enumerate(readings)
    ]
    states: dict[str, SensorState] = {}
    kept: list[CleanReading] = []
    neighbours = Neighbourhood()
    for start in range(0, len(records), 5000):
        result = clean_batch(records[start : start + 5000], states, END + timedelta(hours=1))
        assert not result.dead_letters
        neighbours.judge(result.readings, states)
        kept += result.readings
    flags = with_hindsight(kept)
    neighbours.flag(kept, flags)
    return kept, flags


def _report(kept: list[CleanReading], flags: list[list[str]]) -> dict[str, tuple[int, int]]:
    """(readings, invalidated) per sensor, printed with the flags found."""
    per_sensor: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    found: Counter[str] = Counter()
    for clean, own in zip(kept, flags, strict=True):
        counts = per_sensor[clean.reading.sensor_id]
        counts[0] += 1
        counts[1] += bool(INVALIDATING.intersection(own))
        found.update(own)
    for sensor, (total, bad) in sorted(per_sensor.items()):
        print(f"  {sensor:<30} {total:>7} readings {bad:>5} invalidated ({bad / total:.3%})")
    print(f"  flags: {dict(found)}")
    return {sensor: (total, bad) for sensor, (total, bad) in per_sensor.items()}


def _passed(qc: str) -> str:
    return "S|C" if qc in (QC_SCREENED, QC_CHECKED) else qc


@pytest.mark.parametrize("minutes", [1, 10, 30, 60])
def test_real_records_keep_their_verdicts(minutes: int) -> None:
    thinned = sorted(
        (r for r in real_data.readings(END) if int(str(r["event_time"])[14:16]) % minutes == 0),
        key=lambda r: str(r["event_time"]),
    )
    kept, flags = _clean(thinned)
    print(f"\nevery {minutes} min (hourly stations as they are): {len(kept)} readings")
    per_sensor = _report(kept, flags)
    total = len(kept)
    invalid = sum(bad for _, bad in per_sensor.values())
    questioned = sum(
        qc_verdict(own, clean.screened) == QC_QUESTIONED
        for clean, own in zip(kept, flags, strict=True)
    )
    assert len(per_sensor) == 11
    assert invalid <= MAX_INVALID * total, f"{invalid} of {total} invalidated"
    assert questioned <= MAX_QUESTIONED * total, f"{questioned} of {total} questioned"
    for sensor, (count, bad) in per_sensor.items():
        assert bad <= MAX_INVALID_PER_SENSOR * count, f"{sensor}: {bad} of {count} invalidated"


def test_the_verdicts_do_not_depend_on_the_arrival_order() -> None:
    """Each reading arrives up to six hours late (a station uploading what it buffered): every
    reading gets the flags and the verdict it gets in order. `S` and `C` count as one verdict
    here: `C` says that no valid reading of the sensor was there to judge it by when it came
    (docs/quality.md), which is the arrival order itself."""
    readings = real_data.readings(END)
    rng = random.Random(27)
    late = sorted(
        readings,
        key=lambda r: (
            datetime.fromisoformat(str(r["event_time"])) + timedelta(hours=6 * rng.random())
        ),
    )
    in_order = sorted(readings, key=lambda r: str(r["event_time"]))
    verdicts = []
    for arrival in (in_order, late):
        kept, flags = _clean(arrival)
        verdicts.append(
            {
                clean.reading.event_id: (sorted(own), _passed(qc_verdict(own, clean.screened)))
                for clean, own in zip(kept, flags, strict=True)
            }
        )
    differing = {k: (v, verdicts[1][k]) for k, v in verdicts[0].items() if verdicts[1][k] != v}
    print(f"\n{len(differing)} of {len(verdicts[0])} readings differ: {list(differing)[:10]}")
    assert not differing
