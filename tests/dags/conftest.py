"""DAG tests: Airflow runs in child processes against a metadata DB of the test session's
own, and against the real native stack (Kafka, search, Redis, Celery workers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _require_stack(stack_ready: None) -> None:
    """Every DAG test needs the stack."""


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of an isolated Airflow (SQLite metadata, our DAGs folder), migrated."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "airflow" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        env={**_base_env(), **env},
        check=True,
        capture_output=True,
        timeout=300,
    )
    return env


def _base_env() -> dict[str, str]:
    import os

    return dict(os.environ)
