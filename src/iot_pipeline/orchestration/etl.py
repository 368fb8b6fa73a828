"""The steps of the DAGs, as plain functions over JSON-able values (what Airflow passes
between tasks through XCom).

`iot_sensor_etl`: plan -> process -> commit -> report. A plan is fixed once per run, so a
retried `process` works on exactly the same ranges; `commit` only runs when every range
succeeded, so a failed batch leaves the group's offsets where they were and the next run
processes the same records again (idempotent ids make that safe).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from iot_pipeline.orchestration.batches import batch_id_for, range_tasks, run_tasks
from iot_pipeline.orchestration.offsets import (
    commit_ranges,
    plan_ranges,
    positions,
    ranges_for_times,
)
from iot_pipeline.processing.ranges import OffsetRange
from iot_pipeline.settings import Settings

log = logging.getLogger(__name__)


def plan_batch(settings: Settings, run_id: str, topic: str | None = None) -> dict[str, Any]:
    """Fix the batch: its id, its clock and one capped offset range per partition."""
    topic = topic or settings.kafka_sensor_data_topic
    ranges = plan_ranges(
        settings, topic, settings.etl_consumer_group, settings.etl_max_records_per_partition
    )
    plan = {
        "batch_id": batch_id_for(run_id),
        "ingest_time": datetime.now(UTC).isoformat(),
        "planned_at": time.time(),
        "ranges": [r.model_dump() for r in ranges],
    }
    total = sum(r.size for r in ranges)
    log.info(
        "batch %s: %d records in %d ranges (%s)",
        plan["batch_id"],
        total,
        len(ranges),
        ", ".join(str(r) for r in ranges) or "nothing new",
    )
    return plan


def _ranges(plan: dict[str, Any]) -> list[OffsetRange]:
    return [OffsetRange.model_validate(r) for r in plan["ranges"]]


def process_batch(settings: Settings, plan: dict[str, Any]) -> dict[str, Any]:
    """Run every range of the plan on the Celery workers; raises BatchFailed unless all pass."""
    from iot_pipeline.worker.app import create_app

    tasks = range_tasks(
        plan["batch_id"], datetime.fromisoformat(plan["ingest_time"]), _ranges(plan)
    )
    summary = run_tasks(create_app(settings), tasks, timeout=settings.etl_task_timeout_seconds)
    return summary.as_dict()


def commit_batch(settings: Settings, plan: dict[str, Any]) -> int:
    """Commit the end offsets of the plan's ranges; returns how many partitions moved."""
    ranges = _ranges(plan)
    commit_ranges(settings, settings.etl_consumer_group, ranges)
    log.info("batch %s: committed %s", plan["batch_id"], ", ".join(map(str, ranges)) or "-")
    return len(ranges)


def report_batch(
    settings: Settings, plan: dict[str, Any], summary: dict[str, Any]
) -> dict[str, Any]:
    """The run's summary: records read, valid, flagged, dead-lettered, lag after, duration."""
    lag = {
        p.partition: p.lag
        for p in positions(settings, settings.kafka_sensor_data_topic, settings.etl_consumer_group)
    }
    result = {
        "batch_id": plan["batch_id"],
        "records_read": summary.get("records", 0),
        "indexed": summary.get("indexed", 0),
        "valid": summary.get("valid", 0),
        "flagged": summary.get("flagged", 0),
        "duplicates": summary.get("duplicates", 0),
        "dead_lettered": summary.get("dead_letters", 0),
        "windows_updated": summary.get("windows", 0),
        "lag_after": sum(lag.values()),
        "lag_per_partition": lag,
        "duration_seconds": round(time.time() - float(plan["planned_at"]), 1),
    }
    log.info("batch summary: %s", result)
    return result


def plan_replay(
    settings: Settings,
    run_id: str,
    topic: str,
    partition: int | None,
    start_offset: int | None,
    end_offset: int | None,
    start_time: str | None,
    end_time: str | None,
) -> dict[str, Any]:
    """The ranges of a replay: an offset range of one or every partition, or a time range.

    Replays never touch the consumer group: processing is idempotent, so reprocessing what
    was already indexed overwrites the same documents and recomputes the same windows.
    """
    if start_time or end_time:
        if start_offset is not None or end_offset is not None:
            raise ValueError("give either offsets or times, not both")
        if not (start_time and end_time):
            raise ValueError("a time range needs both start_time and end_time (ISO 8601)")
        ranges = ranges_for_times(settings, topic, _parse_time(start_time), _parse_time(end_time))
    else:
        ranges = []
        for p in positions(settings, topic, f"{settings.etl_consumer_group}.replay"):
            start = p.low if start_offset is None else max(start_offset, p.low)
            end = p.high if end_offset is None else min(end_offset, p.high)
            if end > start:
                ranges.append(OffsetRange(topic=topic, partition=p.partition, start=start, end=end))
    if partition is not None:
        ranges = [r for r in ranges if r.partition == partition]
    # bounded tasks, whatever the span asked for
    cap = settings.etl_max_records_per_partition
    split = [
        OffsetRange(topic=r.topic, partition=r.partition, start=s, end=min(s + cap, r.end))
        for r in ranges
        for s in range(r.start, r.end, cap)
    ]
    log.info("replay %s: %s", run_id, ", ".join(map(str, split)) or "nothing in that range")
    return {
        "batch_id": batch_id_for(f"replay-{run_id}"),
        "ingest_time": datetime.now(UTC).isoformat(),
        "planned_at": time.time(),
        "ranges": [r.model_dump() for r in split],
    }


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not an ISO 8601 time: {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
