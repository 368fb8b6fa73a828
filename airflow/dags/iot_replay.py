"""
### iot_replay — reprocess an offset range or a time range of a topic

Manual runs only (*Trigger DAG w/ config*). Reprocesses records of `topic` (default: the
sensor topic) — every partition or one — chosen by **offsets** (`start_offset`/`end_offset`,
either may be left empty for the log start/end) **or** by **Kafka timestamps**
(`start_time`/`end_time`, ISO 8601). Processing is idempotent: documents are overwritten
under the same ids and windows recomputed; the ETL's consumer group is never touched.

Typical uses: after a fix to the cleaning rules, or to rebuild an index deleted by mistake.
A replay runs on the workers' `replay` queue (the ETL's ranges never wait behind it), the
ranges of a partition in order, and cleans with the state the original run had: it starts
from the nearest checkpoint at or before its first offset and keeps its own state, so its
flags equal the original run's and the live pipeline's checkpoint is never touched.

### iot_dead_letter_replay — re-run the dead-letter topic after a fix

Reprocesses the dead-letter topic (`KAFKA_DLQ_TOPIC`, which holds the original bytes) through
the same pipeline. Records that now pass are indexed under their event ids (replaying twice
changes nothing); records that still fail stay in the dead-letter topic once and are counted
as `still_dead`. Quarantined ranges (reason `range_failed`) come back this way.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from iot_pipeline.settings import get_settings

_OFFSET = {"type": ["null", "integer"], "minimum": 0}
_TIME = {"type": ["null", "string"], "format": "date-time"}


def _plan(topic: str | None = None) -> dict[str, Any]:
    """The replay's plan from the run's parameters (checked: offsets or times, not both)."""
    from iot_pipeline.orchestration.etl import plan_replay
    from iot_pipeline.orchestration.handoffs import ReplayRequest

    context = get_current_context()
    fields = {k: v for k, v in context["params"].items() if k in ReplayRequest.model_fields}
    if topic:
        fields["topic"] = topic
    request = ReplayRequest.model_validate(fields)
    return plan_replay(get_settings(), str(context["run_id"]), request).to_xcom()


def _summary_of(plan: dict[str, Any]) -> dict[str, Any]:
    from iot_pipeline.orchestration.etl import process_replay
    from iot_pipeline.orchestration.handoffs import BatchPlan

    return process_replay(get_settings(), BatchPlan.model_validate(plan)).totals()


@dag(
    dag_id="iot_replay",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["iot", "recovery"],
    params={
        "topic": Param(
            get_settings().kafka_sensor_data_topic,
            type="string",
            enum=[get_settings().kafka_sensor_data_topic, get_settings().dead_letter_topic],
            description="The sensor topic or its dead-letter topic (no other).",
        ),
        "partition": Param(None, type=["null", "integer"], minimum=0),
        "start_offset": Param(None, **_OFFSET),
        "end_offset": Param(None, **_OFFSET),
        "start_time": Param(None, **_TIME),
        "end_time": Param(None, **_TIME),
    },
    doc_md=__doc__,
)
def iot_replay() -> None:
    @task
    def plan() -> dict[str, Any]:
        return _plan()

    @task
    def process(plan: dict[str, Any]) -> dict[str, Any]:
        return _summary_of(plan)

    process(plan())


@dag(
    dag_id="iot_dead_letter_replay",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["iot", "recovery"],
    params={"start_offset": Param(None, **_OFFSET), "end_offset": Param(None, **_OFFSET)},
    doc_md=__doc__,
)
def iot_dead_letter_replay() -> None:
    @task
    def plan() -> dict[str, Any]:
        return _plan(get_settings().dead_letter_topic)

    @task
    def process(plan: dict[str, Any]) -> dict[str, Any]:
        return _summary_of(plan)

    process(plan())


iot_replay()
iot_dead_letter_replay()
