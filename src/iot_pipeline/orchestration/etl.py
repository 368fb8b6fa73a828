"""The steps of the DAGs, as plain functions over JSON-able values (what Airflow passes
between tasks through XCom).

`iot_sensor_etl`: plan -> process -> commit -> report -> verdict. A plan is fixed once per
run, so a retried `process` works on exactly the same ranges. Partitions are isolated: each
one commits as far as its ranges succeeded, whatever happens to the others. A range that
failed `ETL_QUARANTINE_AFTER_FAILURES` times is narrowed to the records that make it fail;
those are quarantined (dead-lettered as `range_failed`) and its partition commits past it.
A range that fails for no record's fault (the engine refuses writes, a dependency stays
down, a timeout) is never quarantined: its partition holds, and the stall is visible.
`verdict` fails the run, visibly in the Airflow UI, when a range failed or was quarantined.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from iot_pipeline.contracts.positions import positions
from iot_pipeline.contracts.ranges import OffsetRange
from iot_pipeline.contracts.reports import REFUSED, BatchSummary, QuarantinedRange, RangeFailure
from iot_pipeline.contracts.run_state import (
    note_committed,
    note_lost,
    note_planned,
    note_range_failed,
    note_refusal,
    note_replayed,
    note_run,
    note_settle,
    pending_quarantines,
)
from iot_pipeline.errors import BatchFailed, DataError
from iot_pipeline.orchestration.batches import (
    batch_id_for,
    narrow_failure,
    range_tasks,
    run_tasks,
    settle_run,
)
from iot_pipeline.orchestration.handoffs import BatchPlan, ReplayRequest, RunReport
from iot_pipeline.orchestration.offsets import (
    commit_ranges,
    ranges_for_times,
    ranges_from,
    rewind_to_log_start,
    split_ranges,
)
from iot_pipeline.orchestration.quarantine import mark_stored, quarantine_range
from iot_pipeline.orchestration.topic_identity import check_identity, topic_id
from iot_pipeline.settings import Settings

log = logging.getLogger(__name__)


def plan_batch(settings: Settings, run_id: str, topic: str | None = None) -> BatchPlan:
    """Fix the batch: its id, its clock and one capped offset range per partition.

    First the topic's identity (a recreated topic starts clean, loudly) and where the group
    stands: records Kafka deleted before they were processed are counted as lost, and a
    partition whose log ends before the group's offset (a reset) starts at its log start."""
    topic = topic or settings.kafka_sensor_data_topic
    group, prefix = settings.etl_consumer_group, settings.search_index_prefix
    identity = topic_id(settings, topic)
    with _state(settings) as client:
        if check_identity(client, prefix, topic, identity):
            rewind_to_log_start(settings, group, topic)
        found = positions(settings, topic, group)
        note_lost(client, prefix, topic, found, time.time())
    reset = [p.partition for p in found if p.reset]
    if reset:
        rewind_to_log_start(settings, group, topic, reset)
    # a reset partition's position is its log start already (what the rewind committed)
    ranges = ranges_from(
        topic, found, settings.etl_max_records_per_partition, settings.etl_range_records
    )
    plan = BatchPlan.now(batch_id_for(run_id), ranges)
    with _state(settings) as client:
        note_planned(client, settings.search_index_prefix, ranges, plan.planned_at)
    total = sum(r.size for r in ranges)
    log.info(
        "batch %s: %d records in %d ranges (%s)",
        plan.batch_id,
        total,
        len(ranges),
        ", ".join(str(r) for r in ranges) or "nothing new",
    )
    return plan


@contextmanager
def _state(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        yield client
    finally:
        client.close()


def process_batch(settings: Settings, plan: BatchPlan) -> BatchSummary:
    """Run every range of the plan on the Celery workers; quarantine ranges that keep failing.

    Never raises for a failed range: the summary's `done` says what each partition may
    commit, `failures` and `quarantined` what went wrong (the verdict task fails the run)."""
    from iot_pipeline.contracts.tasks import create_app

    ingest_time = plan.ingest_time
    tasks = range_tasks(plan.batch_id, ingest_time, plan.ranges)
    app = create_app(settings)
    summary = run_tasks(
        app,
        tasks,
        timeout=settings.etl_task_timeout_seconds,
        budget=settings.etl_run_budget_seconds,
    )
    refused: list[RangeFailure] = []
    now = time.time()
    # When every range of a run fails, the cause is the system (workers gone or broken, a
    # store refusing everything), not the data: hold the partitions (a stall, visible) rather
    # than pour every record into the dead-letter topic.
    systemic = len(tasks) > 1 and len(summary.failures) == len(tasks) and not summary.done
    with _state(settings) as client:
        for failure in summary.failures:
            attempts = note_range_failed(
                client, settings.search_index_prefix, failure.range, failure.error, now
            )
            if not failure.records_to_blame or systemic:
                # a refusal of the engine, a dependency down, a timeout: no record is to
                # blame, so none is quarantined; the partition holds until the cause goes
                refused += [failure] if failure.kind == REFUSED else []
                log.error(
                    "range %s failed (attempt %d, %s): held, not quarantined: %s",
                    failure.range,
                    attempts,
                    "like every range of this run" if systemic else failure.kind,
                    failure.error,
                )
                continue
            if attempts < settings.etl_quarantine_after_failures:
                log.warning(
                    "range %s failed (attempt %d of %d before quarantine): %s",
                    failure.range,
                    attempts,
                    settings.etl_quarantine_after_failures,
                    failure.error,
                )
                continue
            # Set aside only what fails: the rest of the range is processed as usual.
            culprits = narrow_failure(
                app,
                failure,
                plan.batch_id,
                ingest_time,
                settings.etl_task_timeout_seconds,
                summary,
            )
            held = [c for c in culprits if not c.records_to_blame]
            if held:
                refused += [c for c in held if c.kind == REFUSED]
                log.error(
                    "range %s failed %d times, but narrowing it met a failure no record is "
                    "to blame for (%s): held, not quarantined",
                    failure.range,
                    attempts,
                    "; ".join(f"{c.range}: {c.kind}: {c.error}" for c in held),
                )
                continue
            log.warning(
                "range %s failed %d times: narrowed to %s",
                failure.range,
                attempts,
                ", ".join(str(c.range) for c in culprits) or "nothing (it passed this time)",
            )
            for culprit in culprits:
                entry = quarantine_range(
                    settings,
                    client,
                    culprit.range,
                    culprit.error,
                    attempts,
                    plan.batch_id,
                    ingest_time,
                )
                summary.quarantined.append(
                    QuarantinedRange(range=entry.range, records=entry.records)
                )
            summary.done = _extend(summary.done, failure.range)
        note_refusal(client, settings.search_index_prefix, refused, now)
    # What spans partitions, once for the whole run (processing.across_partitions); a failure
    # fails the run visibly and leaves the work pending for the next run's settle. When every
    # range failed, this run added nothing and the cause is the system's: the pending work
    # waits for a run that gets through, instead of one more timeout.
    if summary.failures and not summary.ranges:
        log.warning(
            "batch %s: every range failed; the settle waits for the next run", plan.batch_id
        )
        return summary
    settled, summary.settle_error = settle_run(
        app, plan.batch_id, settings.etl_task_timeout_seconds
    )
    with _state(settings) as client:  # health shows a settle failing since when, and why
        note_settle(client, settings.search_index_prefix, summary.settle_error, time.time())
    if summary.settle_error:
        log.error(
            "batch %s: settle across partitions failed: %s", plan.batch_id, summary.settle_error
        )
    summary.windows += int(settled.get("windows", 0))
    summary.spatial_changes += int(settled.get("spatial_changes", 0))
    return summary


def _extend(done: list[OffsetRange], quarantined: OffsetRange) -> list[OffsetRange]:
    """The committable ranges once a quarantined range counts as done (it follows on from
    its partition's done range, or starts where nothing was done)."""
    out = [r for r in done if r.partition != quarantined.partition]
    before = next((r for r in done if r.partition == quarantined.partition), None)
    start = before.start if before is not None else quarantined.start
    out.append(quarantined.model_copy(update={"start": start}))
    return sorted(out, key=lambda r: r.partition)


def process_replay(settings: Settings, plan: BatchPlan) -> BatchSummary:
    """Run a replay's ranges on the replay queue. A range whose processing raised is narrowed
    to the records that make it fail, and the rest of it is processed; then, if anything
    failed, BatchFailed names exactly that (the poison records, or the ranges no record is
    to blame for, which a later replay retries)."""
    from iot_pipeline.contracts.tasks import REPLAY_QUEUE, create_app

    app = create_app(settings)
    timeout = settings.etl_task_timeout_seconds
    tasks = range_tasks(plan.batch_id, plan.ingest_time, plan.ranges, replay=True)
    summary = run_tasks(app, tasks, timeout=timeout, queue=REPLAY_QUEUE)
    failed: list[RangeFailure] = []
    for failure in summary.failures:
        if not failure.records_to_blame:
            failed.append(failure)
            continue
        culprits = narrow_failure(
            app, failure, plan.batch_id, plan.ingest_time, timeout, summary, True, REPLAY_QUEUE
        )
        log.error(
            "replay range %s failed: narrowed to %s, the rest of it replayed",
            failure.range,
            ", ".join(str(c.range) for c in culprits) or "nothing (it passed this time)",
        )
        failed += culprits
    if failed:
        raise BatchFailed(
            f"{len(failed)} ranges of the replay failed (everything else was replayed): "
            + "; ".join(f"{f.range}: {f.error}" for f in failed)
        )
    return summary


def commit_batch(settings: Settings, summary: BatchSummary) -> int:
    """Commit, per partition, the end of what was done; returns how many partitions moved."""
    ranges = commit_ranges(settings, settings.etl_consumer_group, summary.done)
    with _state(settings) as client:
        note_committed(client, settings.search_index_prefix, ranges, time.time())
    log.info("batch %s: committed %s", summary.batch_id, ", ".join(map(str, ranges)) or "-")
    return len(ranges)


def report_batch(settings: Settings, plan: BatchPlan, summary: BatchSummary) -> RunReport:
    """The run's summary: records read, valid, flagged, dead-lettered, failed and quarantined
    ranges, lag after, duration."""
    lag = {
        p.partition: p.lag
        for p in positions(settings, settings.kafka_sensor_data_topic, settings.etl_consumer_group)
    }
    with _state(settings) as client:
        # a settle that failed makes the run unclean too: its work waits (visible in health)
        clean = not (summary.failures or summary.settle_error)
        failed_runs = note_run(client, settings.search_index_prefix, clean=clean)
    report = RunReport.of(plan, summary, lag, failed_runs)
    log.info("batch summary: %s", report.to_xcom())
    return report


# Quarantined ranges replayed after one clean run, at most: the rest waits for the next.
QUARANTINE_REPLAYS_PER_RUN = 4


def replay_quarantined(settings: Settings, report: RunReport) -> dict[str, Any]:
    """Once a run is clean again, replay the ranges quarantined before (their source
    records, with the replay's own cleaner state: the original verdicts; readings stored
    already stay as they are). What fails again stays pending for the next clean run."""
    if not report.clean:
        return {"replayed": [], "waiting": "this run was not clean"}
    prefix = settings.search_index_prefix
    with _state(settings) as client:
        pending = pending_quarantines(client, prefix, QUARANTINE_REPLAYS_PER_RUN)
    if not pending:
        return {"replayed": []}
    ranges = split_ranges([q.offsets for q in pending], settings.etl_range_records)
    plan = BatchPlan.now(batch_id_for(f"quarantine-replay-{report.batch_id}"), ranges)
    names = [q.range for q in pending]
    try:
        summary = process_replay(settings, plan)
    except BatchFailed as exc:
        log.warning("quarantined ranges %s fail again; kept for the next clean run: %s", names, exc)
        return {"replayed": [], "failed": str(exc)[:500]}
    for q in pending:
        mark_stored(settings, q.offsets, False)
    with _state(settings) as client:
        note_replayed(client, prefix, names)
    log.info("quarantined ranges replayed now that runs are clean: %s", ", ".join(names))
    return {"replayed": names, "records": summary.records}


def needs_catch_up(settings: Settings, report: RunReport) -> bool:
    """Whether the next run should start at once: a clean run that left a backlog behind.
    A run with failures waits for the schedule (a failing range must not spin)."""
    if not report.clean:
        return False
    behind = report.lag_after >= settings.etl_catch_up_min_lag
    if behind:
        log.info("lag %s after this run: triggering the next run now", report.lag_after)
    return behind


def verdict(report: RunReport) -> str:
    """Raise (failing the run) when a range failed or was quarantined; else say all is well."""
    if report.settle_error and not (report.failed_ranges or report.quarantined_ranges):
        raise BatchFailed(
            f"the settle across partitions failed (its work waits for the next run): "
            f"{report.settle_error}"
        )
    if not report.clean:
        quarantined = report.quarantined_ranges
        raise BatchFailed(
            f"{len(report.failed_ranges)} ranges failed"
            + (
                f" ({len(quarantined)} quarantined: {', '.join(quarantined)})"
                if quarantined
                else ""
            )
            + "; other partitions committed. "
            + "; ".join(report.failed_ranges)
        )
    return f"ok: {report.partitions_committed} partitions committed"


class ReplayRefused(DataError, ValueError):
    """A replay asked for a topic that is not the pipeline's (`__consumer_offsets`, ...)."""


def plan_replay(settings: Settings, run_id: str, request: ReplayRequest) -> BatchPlan:
    """The ranges of a replay: an offset range of one or every partition, or a time range.

    Replays never touch the consumer group: processing is idempotent, so reprocessing what
    was already indexed leaves the stored documents as they are (`create`) and recomputes
    the same windows.
    """
    topic = request.topic
    allowed = (settings.kafka_sensor_data_topic, settings.dead_letter_topic)
    if topic not in allowed:
        raise ReplayRefused(
            f"a replay reads the sensor topic or its dead-letter topic ({', '.join(allowed)}), "
            f"not {topic!r}"
        )
    if request.start_time is not None and request.end_time is not None:
        ranges = ranges_for_times(settings, topic, request.start_time, request.end_time)
    else:
        ranges = []
        for p in positions(settings, topic, f"{settings.etl_consumer_group}.replay"):
            start = p.low if request.start_offset is None else max(request.start_offset, p.low)
            end = p.high if request.end_offset is None else min(request.end_offset, p.high)
            if end > start:
                ranges.append(OffsetRange(topic=topic, partition=p.partition, start=start, end=end))
    if request.partition is not None:
        ranges = [r for r in ranges if r.partition == request.partition]
    # bounded tasks, whatever the span asked for
    split = split_ranges(ranges, settings.etl_range_records)
    log.info("replay %s: %s", run_id, ", ".join(map(str, split)) or "nothing in that range")
    return BatchPlan.now(batch_id_for(f"replay-{run_id}"), split)
