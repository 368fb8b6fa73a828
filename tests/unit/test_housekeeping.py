"""State that would grow for ever is bounded: task logs, the cleaner's per-sensor state."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from iot_pipeline.cleaning import SensorState
from iot_pipeline.cleaning.batch import CleaningPolicy, clean_batch
from iot_pipeline.cleaning.state import evict_idle
from iot_pipeline.orchestration.housekeeping import HISTORY_TABLES, clean_command, prune_logs


def _aged(path: Path, days: float) -> None:
    moment = time.time() - days * 86400
    os.utime(path, (moment, moment))


def test_prune_logs_deletes_old_files_and_their_empty_folders_only(tmp_path: Path) -> None:
    old = tmp_path / "dag_id=a" / "run_id=1" / "1.log"
    new = tmp_path / "dag_id=a" / "run_id=2" / "1.log"
    fresh_empty = tmp_path / "dag_id=b" / "run_id=3"
    for path in (old, new):
        path.parent.mkdir(parents=True)
        path.write_text("x" * 100, encoding="utf-8")
    fresh_empty.mkdir(parents=True)
    _aged(old, 20)
    _aged(old.parent, 20)

    pruned = prune_logs(tmp_path, timedelta(days=14))

    assert (pruned.files, pruned.bytes, pruned.folders) == (1, 100, 1)
    assert not old.parent.exists()
    assert new.exists()
    assert fresh_empty.exists()  # a task about to write its log
    assert prune_logs(tmp_path / "missing", timedelta(days=1)).files == 0


def test_db_clean_purges_history_tables_only_without_archives() -> None:
    command = clean_command(datetime(2026, 11, 1, tzinfo=UTC))
    assert command[1:3] == ["db", "clean"]
    assert command[command.index("--clean-before-timestamp") + 1] == "2026-11-01T00:00:00+00:00"
    tables = command[command.index("--tables") + 1].split(",")
    assert set(tables) == set(HISTORY_TABLES)
    assert not {"dag", "connection", "variable", "dag_version"} & set(tables)
    assert {"--skip-archive", "--yes", "--error-on-cleanup-failure"} <= set(command)


def test_sensors_idle_beyond_the_horizon_are_forgotten() -> None:
    now = datetime(2026, 11, 29, 12, tzinfo=UTC).timestamp()
    states = {
        "active": SensorState(touched=now - 3600),
        "silent": SensorState(touched=now - 31 * 86400),
        "never": SensorState(),
    }
    assert sorted(evict_idle(states, now, 30 * 86400)) == ["never", "silent"]
    assert list(states) == ["active"]


def test_cleaning_touches_sensors_and_forgets_the_idle() -> None:
    from iot_pipeline.cleaning.batch import RawRecord

    ingest = datetime(2026, 11, 29, 12, tzinfo=UTC)
    policy = CleaningPolicy(retention_days=30)
    assert policy.idle_limit() == timedelta(days=30)
    assert CleaningPolicy().idle_limit() is None  # no retention, no lateness: keep for ever
    value = (
        b'{"schema_version":1,"event_id":"e-1","sensor_id":"s-1","station_id":"st","district":'
        b'"Anfa","metric":"temperature","value":20.5,"unit":"\\u00b0C","event_time":'
        b'"2026-11-29T11:59:00.000Z","seq":1,"lat":33.5,"lon":-7.6,"battery_pct":80.0,'
        b'"firmware":"1"}'
    )
    record = RawRecord(topic="t", partition=0, offset=0, key=b"s-1", value=value)
    states = {"gone": SensorState(touched=ingest.timestamp() - 40 * 86400)}
    result = clean_batch([record], states, ingest, policy)
    assert len(result.readings) == 1
    assert list(states) == ["s-1"]
    assert states["s-1"].touched == ingest.timestamp()
    # stored and loaded again, and a state saved before `touched` existed
    assert SensorState.from_json(states["s-1"].to_json()).touched == ingest.timestamp()
    legacy = states["s-1"].to_json()
    del legacy["touched"]
    assert SensorState.from_json(legacy).touched == states["s-1"].watermark
