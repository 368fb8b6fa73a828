"""`iot_housekeeping` for real (`dag.test()` on the session's own metadata DB): run history
and task log files older than the kept days are deleted, recent ones stay."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from support.dag_runs import run_airflow


def test_old_runs_and_old_task_logs_are_deleted_recent_ones_kept(
    airflow_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**os.environ, **airflow_env, "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(tmp_path)}
    # history to age: a first run of the DAG itself
    first = run_airflow(env, "test", "iot_housekeeping")
    assert first["state"] == "success", first
    database = Path(airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///"))
    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE dag_run SET start_date = '2020-01-01 00:00:00', "
            "end_date = '2020-01-01 00:01:00' WHERE run_id = ?",
            (first["run_id"],),
        )
    old_log = tmp_path / "dag_id=iot_sensor_etl" / "run_id=old" / "task_id=process" / "1.log"
    old_log.parent.mkdir(parents=True)
    old_log.write_text("an old task log\n", encoding="utf-8")
    month_ago = time.time() - 30 * 86400
    for path in (old_log, old_log.parent, old_log.parent.parent, old_log.parent.parent.parent):
        os.utime(path, (month_ago, month_ago))
    recent_log = tmp_path / "dag_id=iot_sensor_etl" / "run_id=new" / "task_id=process" / "1.log"
    recent_log.parent.mkdir(parents=True)
    recent_log.write_text("a recent task log\n", encoding="utf-8")

    second = run_airflow(env, "test", "iot_housekeeping")

    assert second["state"] == "success", second
    pruned = second["tasks"]["prune_task_logs"]["xcom"]
    assert pruned["files"] >= 1
    assert not old_log.exists()
    assert not (tmp_path / "dag_id=iot_sensor_etl" / "run_id=old").exists()
    assert recent_log.exists()
    with sqlite3.connect(database) as db:
        runs = {row[0] for row in db.execute("SELECT run_id FROM dag_run")}
    assert first["run_id"] not in runs  # older than the kept days: purged
    assert second["run_id"] in runs
