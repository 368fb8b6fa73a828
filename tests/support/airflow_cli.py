"""Run Airflow in a process of its own (its configuration is fixed at import time).

    python airflow_cli.py bag                 DAG integrity as JSON
    python airflow_cli.py test DAG_ID [CONF]  a real `dag.test()` run; state and XComs as JSON

The caller sets AIRFLOW_HOME and friends (see conftest.py).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def bag() -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag()
    return {
        "import_errors": {str(k): str(v) for k, v in dagbag.import_errors.items()},
        "dags": {
            dag_id: {
                "tags": sorted(dag.tags),
                "doc_md": bool(dag.doc_md),
                "max_active_runs": dag.max_active_runs,
                "retries": {t.task_id: t.retries for t in dag.tasks},
                "default_retries": dag.default_args.get("retries"),
            }
            for dag_id, dag in dagbag.dags.items()
        },
    }


def test(dag_id: str, conf: dict[str, Any]) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag().get_dag(dag_id)
    run = dag.test(run_conf=conf or None)
    tasks = {}
    for ti in run.get_task_instances():
        tasks[ti.task_id] = {"state": str(ti.state), "xcom": _xcom(ti)}
    return {"state": str(run.state), "run_id": run.run_id, "tasks": tasks}


def _xcom(ti: Any) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, key="return_value")
            .first()
        )
        return None if row is None else row.value


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "bag":
        result = bag()
    else:
        result = test(sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) > 3 else {})
    print("RESULT " + json.dumps(result, default=str))
