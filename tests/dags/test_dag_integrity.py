"""Every DAG imports, and carries tags, retries, documentation and one run at a time."""

from __future__ import annotations

import os
from typing import Any

import pytest

from support.dag_runs import run_airflow

EXPECTED = {
    "iot_sensor_etl",
    "iot_retention",
    "iot_housekeeping",
    "iot_replay",
    "iot_dead_letter_replay",
}


@pytest.fixture(scope="module")
def bag(airflow_env: dict[str, str]) -> dict[str, Any]:
    return run_airflow({**os.environ, **airflow_env}, "bag")


def test_dags_import_without_errors(bag: dict[str, Any]) -> None:
    assert bag["import_errors"] == {}
    assert set(bag["dags"]) == EXPECTED


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_each_dag_has_tags_retries_docs_and_one_active_run(
    bag: dict[str, Any], dag_id: str
) -> None:
    dag = bag["dags"][dag_id]
    assert "iot" in dag["tags"]
    assert dag["doc_md"]
    assert dag["max_active_runs"] == 1
    assert dag["default_retries"] >= 1
    # every task has an explicit retry policy; only the ETL's processing step opts out
    # (a failed range is retried by the next run from the same committed offsets) and its
    # verdict (which fails the run on purpose when a range failed or was quarantined)
    opted_out = {task for task, retries in dag["retries"].items() if retries == 0}
    assert opted_out == ({"process", "verdict"} if dag_id == "iot_sensor_etl" else set())
