"""A batch, end to end from the orchestrator's side: dispatch its ranges to the Celery
workers, wait for them, and say per partition how far it got.

The ranges of one partition run in order, one at a time (the cleaner's state flows from one
to the next); partitions run in parallel. A range cut short by the byte cap is continued in
the same batch. A failed range stops its own partition only: the others go on, and the
result says which offsets each partition may commit.

Task ids are deterministic (`RangeTask.task_id`): a retried orchestrator finds the results of
ranges that already succeeded, and when it gives up waiting it revokes the task: a copy that
still waits is discarded, one that runs finishes under its partition's lock, so the same range
never runs twice at once.

Nothing here depends on Airflow: the DAGs are thin wrappers, and the same functions serve
tests and scripts.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import redis
from celery import Celery
from celery.exceptions import TimeoutError as ResultTimeout
from celery.result import AsyncResult
from kombu.exceptions import OperationalError

from iot_pipeline.contracts.ranges import OffsetRange, RangeTask
from iot_pipeline.contracts.reports import (
    FAILED,
    REFUSED,
    TIMED_OUT,
    UNAVAILABLE,
    BatchSummary,
    RangeFailure,
    RangeReport,
)
from iot_pipeline.contracts.tasks import PROCESS_RANGE, PROCESSING_QUEUE, SETTLE_RUN
from iot_pipeline.errors import StoreRefused, TransientError

T = TypeVar("T")

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]+")
TIMEOUT_PREFIX = "Timeout:"  # how a range the orchestrator gave up waiting for is reported


def batch_id_for(run_id: str) -> str:
    """A batch id from an orchestrator's run id (stored in documents and headers)."""
    return _UNSAFE.sub("_", run_id)[:128] or "batch"


def range_tasks(
    batch_id: str, ingest_time: datetime, ranges: list[OffsetRange], replay: bool = False
) -> list[RangeTask]:
    """The tasks of these ranges. The ETL's leave what spans partitions to the run's settle
    (`RangeTask.per_run`); a replay's do everything themselves."""
    return [RangeTask.of(batch_id, ingest_time, r, replay, per_run=not replay) for r in ranges]


def failure_kind(exc: object) -> str:
    """The kind of failure a task's exception stands for."""
    if isinstance(exc, StoreRefused):
        return REFUSED
    if isinstance(exc, TransientError):
        return UNAVAILABLE
    return FAILED


@dataclass
class _Partition:
    """One partition's ranges still to run, and how far it got."""

    queue: deque[RangeTask]
    start: int
    reached: int
    running: tuple[RangeTask, AsyncResult[Any]] | None = None
    failed: bool = False


BROKER_OUTAGE_SECONDS = 60.0  # how long a run waits out a Redis restart before it fails
_BROKER_ERRORS = (redis.ConnectionError, redis.TimeoutError, OperationalError)


def _patiently(call: Callable[[], T]) -> T:
    """`call()`, tried again while Redis (broker and result backend) is unreachable, for up to
    BROKER_OUTAGE_SECONDS: a Redis restart must not fail the run in progress."""
    deadline = time.monotonic() + BROKER_OUTAGE_SECONDS
    while True:
        try:
            return call()
        except _BROKER_ERRORS as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("Redis unreachable (%s); trying again", exc)
            time.sleep(1.0)


def _dispatch(app: Celery, task: RangeTask, queue: str) -> AsyncResult[Any]:
    """Send the range's task, unless a task under its id already succeeded or is running."""
    task_id = task.task_id
    earlier: AsyncResult[Any] = app.AsyncResult(task_id)
    if earlier.state in ("SUCCESS", "STARTED", "RETRY"):
        log.info("range %s: task %s already %s", task.range, task_id, earlier.state)
        return earlier
    if str(earlier.state) == "REVOKED":  # workers discard a revoked id for good: take a new one
        task_id = f"{task_id}:{uuid.uuid4().hex[:8]}"
    return app.send_task(
        PROCESS_RANGE, args=[task.model_dump(mode="json")], task_id=task_id, queue=queue
    )


def run_tasks(
    app: Celery,
    tasks: list[RangeTask],
    timeout: float,
    poll: float = 0.5,
    queue: str = PROCESSING_QUEUE,
    budget: float | None = None,
) -> BatchSummary:
    """Dispatch every range (keys, not payloads), partition by partition in offset order, and
    wait; failures and timeouts are returned in the summary, never raised.

    After `budget` seconds no further range is started: each partition ends where its
    started ranges got to, and the rest is left to the next run (nothing is lost, the
    partitions commit what was done)."""
    summary = BatchSummary(batch_id=tasks[0].batch_id if tasks else "empty")
    partitions: dict[tuple[str, int], _Partition] = {}
    for task in sorted(tasks, key=lambda t: (t.range.topic, t.range.partition, t.range.start)):
        key = (task.range.topic, task.range.partition)
        if key not in partitions:
            partitions[key] = _Partition(deque(), task.range.start, task.range.start)
        partitions[key].queue.append(task)
    log.debug("dispatching %d ranges of batch %s", len(tasks), summary.batch_id)
    deadline = time.monotonic() + timeout
    last_start = time.monotonic() + (budget if budget is not None else timeout)

    def start_next(part: _Partition, first: bool = False) -> None:
        part.running = None
        if part.queue and not part.failed and (first or time.monotonic() < last_start):
            task = part.queue.popleft()
            part.running = (task, _patiently(lambda: _dispatch(app, task, queue)))

    for part in partitions.values():
        start_next(part, first=True)
    while any(p.running for p in partitions.values()):
        for part in partitions.values():
            if part.running is None or not _patiently(part.running[1].ready):
                continue
            task, result = part.running
            if result.successful():
                report = RangeReport.model_validate(result.get())
                summary.add_range(report)
                log.info("range %s done: %s", task.range, report.short())
                part.reached = report.end
                if part.reached < task.range.end:  # cut short by the byte cap: go on
                    rest = task.range.model_copy(update={"start": part.reached})
                    part.queue.appendleft(task.model_copy(update={"range": rest}))
            else:
                error = f"{type(result.result).__name__}: {result.result}"[:500]
                kind = failure_kind(result.result)
                summary.failures.append(RangeFailure(range=task.range, error=error, kind=kind))
                part.failed = True
                log.error("range %s failed: %s", task.range, error)
            start_next(part)
        if not any(p.running for p in partitions.values()):
            break
        if time.monotonic() > deadline:
            _give_up(app, partitions, summary, timeout)
            break
        time.sleep(poll)
    summary.done = [
        OffsetRange(topic=topic, partition=partition, start=p.start, end=p.reached)
        for (topic, partition), p in sorted(partitions.items())
        if p.reached > p.start
    ]
    return summary


def _give_up(
    app: Celery,
    partitions: dict[tuple[str, int], _Partition],
    summary: BatchSummary,
    timeout: float,
) -> None:
    """Revoke what still runs and count it as failed.

    Revoking discards the task where it still waits (queued, or a retry due later); a task
    already running finishes, holding its partition's lock (the next run's task for that range
    waits for it, and then finds its readings stored). It is never terminated: a signal goes
    to the pool process, which by then may be running another range, which would be lost until
    the broker's visibility timeout (Celery documents `terminate` as an administrator's last
    resort, never to be sent by a program). A task that hangs meets the worker's own
    `WORKER_TASK_TIME_LIMIT_SECONDS`, which stops the right process."""
    for part in partitions.values():
        if part.running is None:
            continue
        task, _ = part.running
        app.control.revoke(task.task_id)
        error = f"{TIMEOUT_PREFIX} not done after {timeout:.0f}s (task revoked)"
        summary.failures.append(RangeFailure(range=task.range, error=error, kind=TIMED_OUT))
        log.error("range %s: %s", task.range, error)
        part.running = None
        part.failed = True


def settle_run(app: Celery, batch_id: str, timeout: float) -> tuple[dict[str, Any], str | None]:
    """Have a worker settle what the run's ranges left across partitions (district windows,
    buddy check); (its counts, None) or ({}, why it failed). A failure leaves the work
    pending for the next run's settle."""
    # never the id of an earlier settle of this batch (a rerun of the step): workers drop a
    # task whose id they saw revoked
    task_id = f"settle:{batch_id}:{uuid.uuid4().hex[:8]}"
    try:
        result = app.send_task(SETTLE_RUN, args=[batch_id], queue=PROCESSING_QUEUE, task_id=task_id)
        outcome = result.get(timeout=timeout, disable_sync_subtasks=False)
        result.forget()
    except ResultTimeout:
        app.control.revoke(task_id, terminate=True, signal="SIGKILL")
        return {}, f"{TIMEOUT_PREFIX} settle not done after {timeout:.0f}s (task revoked)"
    except Exception as exc:  # any failure is reported: the work stays pending
        return {}, f"{type(exc).__name__}: {str(exc)[:1000]}"
    return dict(outcome), None


def narrow_failure(
    app: Celery,
    failure: RangeFailure,
    batch_id: str,
    ingest_time: datetime,
    timeout: float,
    summary: BatchSummary,
    replay: bool = False,
    queue: str = PROCESSING_QUEUE,
) -> list[RangeFailure]:
    """Bisect a range that keeps failing: process its halves in order and recurse into the
    halves that fail, down to single records. Returns the smallest ranges that still fail
    (the culprits); everything else of the range is processed now, its counts added to
    `summary`. Only a failure the records may be to blame for is bisected: a half that
    times out, is refused by the engine or meets a dependency down is returned as it is
    (the caller holds the partition rather than quarantine it)."""
    offsets = failure.range
    if offsets.size <= 1 or not failure.records_to_blame:
        return [failure]
    middle = offsets.start + offsets.size // 2
    culprits: list[RangeFailure] = []
    for start, end in ((offsets.start, middle), (middle, offsets.end)):
        half = offsets.model_copy(update={"start": start, "end": end})
        tasks = range_tasks(batch_id, ingest_time, [half], replay=replay)
        outcome = run_tasks(app, tasks, timeout, poll=0.2, queue=queue)
        summary.merge(outcome)
        for failed in outcome.failures:
            culprits += narrow_failure(
                app, failed, batch_id, ingest_time, timeout, summary, replay, queue
            )
    return culprits
