"""
### iot_retention — delete reading and aggregate indices past their retention
### iot_housekeeping — keep Airflow's own history bounded

Daily. Deletes whole daily reading indices (`<prefix>-readings-YYYY.MM.DD`) older than
`RETENTION_DAYS` (or the `keep_days` parameter of a manual run), and aggregate indices
(`<prefix>-agg-1m-YYYY.MM.DD`, `-agg-1h-YYYY.MM`, `-agg-1d-YYYY`) whose last day is older than
`AGGREGATE_RETENTION_DAYS_1M`, `_1H` and `_1D`.

`iot_housekeeping` (daily) deletes metadata DB rows (runs, task instances, XComs, jobs, audit
log) and task log files older than `AIRFLOW_HISTORY_DAYS` (or its `keep_days` parameter), and
sends the operator overrides still `pending` or `removing` (their message to the workers was
lost) to the workers again: trigger it to settle them at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from iot_pipeline.settings import get_settings


def _daily(dag_id: str, keep_days: int, keep_what: str) -> Any:
    """A daily maintenance DAG with one parameter, `keep_days`."""
    return dag(
        dag_id=dag_id,
        schedule="@daily",
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
        tags=["iot", "maintenance"],
        params={
            "keep_days": Param(
                keep_days, type="integer", minimum=1, description=f"Days of {keep_what} to keep."
            )
        },
        doc_md=__doc__,
    )


@_daily("iot_retention", get_settings().retention_days, "reading indices (today included)")
def iot_retention() -> None:
    @task
    def delete_expired() -> dict[str, Any]:
        from iot_pipeline.storage.retention import apply_retention

        keep_days = int(get_current_context()["params"]["keep_days"])
        deleted = apply_retention(get_settings(), keep_days)
        return {"keep_days": keep_days, "deleted": deleted}

    delete_expired()


iot_retention()


@_daily(
    "iot_housekeeping",
    get_settings().airflow_history_days,
    "Airflow history (metadata rows, task logs)",
)
def iot_housekeeping() -> None:
    @task
    def clean_metadata() -> dict[str, Any]:
        from iot_pipeline.orchestration.housekeeping import clean_metadata

        keep_days = int(get_current_context()["params"]["keep_days"])
        return {"keep_days": keep_days, "cleaned_before": clean_metadata(timedelta(keep_days))}

    @task
    def prune_task_logs() -> dict[str, Any]:
        from airflow.configuration import conf

        from iot_pipeline.orchestration.housekeeping import prune_logs

        keep_days = int(get_current_context()["params"]["keep_days"])
        folder = Path(conf.get("logging", "base_log_folder"))
        return {"folder": str(folder), **prune_logs(folder, timedelta(keep_days)).as_dict()}

    @task
    def sweep_overrides() -> dict[str, Any]:
        from iot_pipeline.orchestration.override_sweep import sweep_overrides

        return {"sent": sweep_overrides(get_settings())}

    clean_metadata()
    prune_task_logs()
    sweep_overrides()


iot_housekeeping()
