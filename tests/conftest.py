"""Shared fixtures. Tests isolate themselves from a live pipeline on the same stack:
their own topic names, index prefix, consumer groups and Redis database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from iot_pipeline.settings import StackSettings

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent

# Each test folder is a tier with a marker of its own (`make check` runs `unit` only,
# `make chaos` runs `chaos` only); every tier but `unit` needs the running stack.
TIERS = ("unit", "integration", "dags", "e2e", "chaos")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its folder's tier, and `integration` when it needs the stack."""
    for item in items:
        folder = Path(item.path).resolve().relative_to(HERE).parts[0]
        if folder in TIERS:
            item.add_marker(getattr(pytest.mark, folder))
            if folder != "unit":
                item.add_marker(pytest.mark.integration)


# Redis keeps the live pipeline in database 0 (REDIS_URL); tests use this one.
TEST_REDIS_DB = 15


@pytest.fixture(scope="session")
def run_id() -> str:
    """A short id unique to this test session, used in every name a test creates."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def base_settings() -> StackSettings:
    """The settings the stack runs with (environment and .env)."""
    return StackSettings()


@pytest.fixture(scope="session")
def test_settings(base_settings: StackSettings, run_id: str) -> StackSettings:
    """The stack's settings with names no live component uses."""
    host, port = base_settings.redis_address
    return base_settings.model_copy(
        update={
            "kafka_sensor_data_topic": f"test.{run_id}.iot_sensor_data",
            "kafka_dlq_topic": f"test.{run_id}.iot_sensor_data.dlq",
            "search_index_prefix": f"test-{run_id}",
            "redis_url": f"redis://{host}:{port}/{TEST_REDIS_DB}",
        }
    )


@pytest.fixture(scope="session")
def stack_ready(base_settings: StackSettings) -> None:
    """Fail (not skip) integration tests clearly when the stack is not running."""
    from iot_pipeline.contracts.probes import kafka_health, redis_health, search_health

    down = [
        f"{name}: {health.detail}"
        for name, probe in (
            ("kafka", kafka_health),
            ("search", search_health),
            ("redis", redis_health),
        )
        if not (health := probe(base_settings)).ok
    ]
    if down:
        pytest.fail("the native stack is not ready (run `make up`): " + "; ".join(down))


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
    return dict(os.environ)


@pytest.fixture(scope="module")
def celery_app(settings: StackSettings) -> Iterator[Celery]:
    """A Celery app on the module's own settings (its `settings` fixture), queues purged
    before and after so no task of another module runs on its workers."""
    from iot_pipeline.contracts.tasks import create_app

    app = create_app(settings)
    app.control.purge()
    yield app
    app.control.purge()
