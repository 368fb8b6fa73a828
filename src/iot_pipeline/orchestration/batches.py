"""A batch, end to end from the orchestrator's side: dispatch its ranges to the Celery
workers, wait for all of them, and summarise what they did.

Nothing here depends on Airflow: the DAGs are thin wrappers, and the same functions serve
tests and scripts.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from iot_pipeline.processing.ranges import OffsetRange, RangeTask
from iot_pipeline.worker.app import PROCESS_RANGE

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]+")


class BatchFailed(RuntimeError):
    """At least one range failed or did not finish in time: nothing may be committed."""


def batch_id_for(run_id: str) -> str:
    """A batch id from an orchestrator's run id (stored in documents and headers)."""
    return _UNSAFE.sub("_", run_id)[:128] or "batch"


def range_tasks(batch_id: str, ingest_time: datetime, ranges: list[OffsetRange]) -> list[RangeTask]:
    return [RangeTask.of(batch_id, ingest_time, r) for r in ranges]


@dataclass
class BatchSummary:
    """What a batch did, summed over its ranges (the run's visible result)."""

    batch_id: str
    ranges: int = 0
    records: int = 0
    indexed: int = 0
    valid: int = 0
    flagged: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    still_dead: int = 0
    windows: int = 0
    task_seconds: float = 0.0
    per_range: list[str] = field(default_factory=list)

    def add(self, report: dict[str, Any]) -> None:
        self.ranges += 1
        for name in (
            "records",
            "indexed",
            "valid",
            "flagged",
            "duplicates",
            "dead_letters",
            "still_dead",
            "windows",
        ):
            setattr(self, name, getattr(self, name) + int(report.get(name, 0)))
        self.task_seconds = round(self.task_seconds + float(report.get("seconds", 0.0)), 3)
        self.per_range.append(f"{report.get('range')}: {report.get('records')} records")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_tasks(
    app: Celery, tasks: list[RangeTask], timeout: float, poll: float = 0.5
) -> BatchSummary:
    """Dispatch every range (keys, not payloads) and wait for all; raise unless all succeed."""
    summary = BatchSummary(tasks[0].batch_id if tasks else "empty")
    if not tasks:
        return summary
    results: list[tuple[RangeTask, AsyncResult[Any]]] = [
        (t, app.send_task(PROCESS_RANGE, args=[t.model_dump(mode="json")])) for t in tasks
    ]
    log.info("dispatched %d ranges of batch %s", len(results), summary.batch_id)
    deadline = time.monotonic() + timeout
    pending = dict(enumerate(results))
    failures: list[str] = []
    while pending:
        for key, (task, result) in list(pending.items()):
            if not result.ready():
                continue
            del pending[key]
            if result.successful():
                report = result.get()
                summary.add(report)
                log.info("range %s done: %s", task.range, _short(report))
            else:
                failures.append(f"{task.range}: {result.result!r}"[:500])
                log.error("range %s failed: %r", task.range, result.result)
        if pending and time.monotonic() > deadline:
            late = ", ".join(str(t.range) for t, _ in pending.values())
            raise BatchFailed(
                f"{len(pending)} of {len(tasks)} ranges not done after {timeout:.0f}s: {late}"
            )
        if pending:
            time.sleep(poll)
    if failures:
        raise BatchFailed(f"{len(failures)} of {len(tasks)} ranges failed: " + "; ".join(failures))
    return summary


def _short(report: dict[str, Any]) -> str:
    keys = ("records", "indexed", "valid", "flagged", "dead_letters", "windows", "seconds")
    return ", ".join(f"{k}={report.get(k)}" for k in keys)
