"""
### iot_retention — delete reading and aggregate indices past their retention

Daily. Deletes whole daily reading indices (`<prefix>-readings-YYYY.MM.DD`) older than
`RETENTION_DAYS` (or the `keep_days` parameter of a manual run), and aggregate indices
(`<prefix>-agg-1m-YYYY.MM.DD`, `-agg-1h-YYYY.MM`, `-agg-1d-YYYY`) whose last day is older than
`AGGREGATE_RETENTION_DAYS_1M`, `_1H` and `_1D`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from iot_pipeline.settings import get_settings


@dag(
    dag_id="iot_retention",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["iot", "maintenance"],
    params={
        "keep_days": Param(
            get_settings().retention_days,
            type="integer",
            minimum=1,
            description="Days of reading indices to keep (today included).",
        )
    },
    doc_md=__doc__,
)
def iot_retention() -> None:
    @task
    def delete_expired() -> dict[str, Any]:
        from iot_pipeline.storage.retention import apply_retention

        keep_days = int(get_current_context()["params"]["keep_days"])
        deleted = apply_retention(get_settings(), keep_days)
        return {"keep_days": keep_days, "deleted": deleted}

    delete_expired()


iot_retention()
