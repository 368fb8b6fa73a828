"""DAG tests: Airflow runs in child processes against a metadata DB of the test session's
own, and against the real native stack (Kafka, search, Redis, Celery workers)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _require_stack(stack_ready: None) -> None:
    """Every DAG test needs the stack."""
