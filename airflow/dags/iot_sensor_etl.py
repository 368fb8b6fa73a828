"""
### iot_sensor_etl — drain Kafka in offset-range batches

Every run (schedule `ETL_SCHEDULE`, default every minute, one run at a time):

1. **plan** — one range per partition of `KAFKA_SENSOR_DATA_TOPIC`, from the committed
   offset of consumer group `ETL_CONSUMER_GROUP` to the high watermark, capped at
   `ETL_MAX_RECORDS_PER_PARTITION`. The plan is fixed for the run (XCom), so a retry works
   on exactly the same ranges.
2. **process** — one Celery task `iot.process_range` per range (batch keys, not payloads):
   the workers read, clean, index, dead-letter and recompute the touched windows. Waits up to
   `ETL_TASK_TIMEOUT_SECONDS`, then revokes what still runs. A range that failed
   `ETL_QUARANTINE_AFTER_FAILURES` runs in a row is narrowed down (by bisection) to the
   records that make it fail; those are **quarantined**: dead-lettered as `range_failed`
   (replay them with `iot_dead_letter_replay`), and the rest of the range is processed.
3. **commit** — per partition: each partition whose ranges succeeded (or were quarantined)
   commits its end offset, whatever happened to the others. A failed range's partition stays
   where it was and is retried by the next run (deterministic ids: nothing is duplicated).
4. **report** — the run summary (records read, valid, flagged, dead-lettered, failed and
   quarantined ranges, lag after the run, duration): the return value (XCom tab) and its log.
5. **verdict** — fails the run (red in the grid, the reason in its log) when a range failed
   or was quarantined; `make status` and `/pipeline/status` show the same. A range no record
   is to blame for (the engine refuses writes, a dependency stays down, a timeout) is never
   quarantined: its partition holds, visibly, until the cause goes.
6. **replay_quarantined** — once a run is clean again, the ranges quarantined before (up to
   four per run) are replayed from their source records with the original verdicts; what
   fails again waits for the next clean run.
7. **behind** → **catch_up** — when a clean run leaves at least `ETL_CATCH_UP_MIN_LAG`
   records behind (a backlog after an outage, a backfill), the next run is triggered at once
   instead of waiting for the schedule; otherwise `catch_up` is skipped.

A run plans up to `ETL_MAX_RECORDS_PER_PARTITION` records per partition, in ranges of
`ETL_RANGE_RECORDS` that run in order per partition and side by side across partitions, and
starts no new range after `ETL_RUN_BUDGET_SECONDS`: batch size follows the backlog, and every
batch is still one DAG run with its summary.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, get_current_context, task

from iot_pipeline.settings import get_settings


@dag(
    dag_id="iot_sensor_etl",
    schedule=get_settings().etl_schedule,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=["iot", "etl"],
    doc_md=__doc__,
)
def iot_sensor_etl() -> None:
    @task
    def plan() -> dict[str, Any]:
        from iot_pipeline.orchestration.etl import plan_batch

        return plan_batch(get_settings(), str(get_current_context()["run_id"])).to_xcom()

    # Failed ranges are not retried inside the run: the next run plans from the same
    # committed offsets (and counts towards quarantine); workers retry transient errors.
    @task(retries=0)
    def process(plan: dict[str, Any]) -> dict[str, Any]:
        from iot_pipeline.orchestration.etl import process_batch
        from iot_pipeline.orchestration.handoffs import BatchPlan

        return process_batch(get_settings(), BatchPlan.model_validate(plan)).to_xcom()

    @task
    def commit(summary: dict[str, Any]) -> int:
        from iot_pipeline.contracts.reports import BatchSummary
        from iot_pipeline.orchestration.etl import commit_batch

        return commit_batch(get_settings(), BatchSummary.model_validate(summary))

    @task
    def report(plan: dict[str, Any], summary: dict[str, Any], committed: int) -> dict[str, Any]:
        from iot_pipeline.contracts.reports import BatchSummary
        from iot_pipeline.orchestration.etl import report_batch
        from iot_pipeline.orchestration.handoffs import BatchPlan

        batch = BatchSummary.model_validate(summary)
        return report_batch(get_settings(), BatchPlan.model_validate(plan), batch).to_xcom()

    @task(retries=0)
    def verdict(report: dict[str, Any]) -> str:
        from iot_pipeline.orchestration.etl import verdict
        from iot_pipeline.orchestration.handoffs import RunReport

        return verdict(RunReport.model_validate(report))

    @task  # retried like the others: a replay is idempotent (create, its own cleaner state)
    def replay_quarantined(report: dict[str, Any]) -> dict[str, Any]:
        from iot_pipeline.orchestration.etl import replay_quarantined
        from iot_pipeline.orchestration.handoffs import RunReport

        return replay_quarantined(get_settings(), RunReport.model_validate(report))

    @task.short_circuit
    def behind(report: dict[str, Any]) -> bool:
        from iot_pipeline.orchestration.etl import needs_catch_up
        from iot_pipeline.orchestration.handoffs import RunReport

        return needs_catch_up(get_settings(), RunReport.model_validate(report))

    catch_up = TriggerDagRunOperator(
        task_id="catch_up",
        trigger_dag_id="iot_sensor_etl",
        conf={"catch_up": True},
    )

    planned = plan()
    summary = process(planned)
    reported = report(planned, summary, commit(summary))
    verdict(reported)
    replay_quarantined(reported)
    behind(reported) >> catch_up


iot_sensor_etl()
