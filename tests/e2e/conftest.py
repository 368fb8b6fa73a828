"""End-to-end tests: generator -> Kafka -> Airflow (`dag.test()`) -> Celery -> search, with
hostile input and injected faults, on the real native stack."""

import pytest


@pytest.fixture(autouse=True)
def _require_stack(stack_ready: None) -> None:
    """Every end-to-end test needs the stack."""
