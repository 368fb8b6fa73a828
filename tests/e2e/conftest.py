"""End-to-end tests: generator -> Kafka -> Airflow (`dag.test()`) -> Celery -> search, with
hostile input and injected faults, on the real native stack."""

from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def _require_stack(stack_ready: None) -> None:
    """Every end-to-end test needs the stack."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)
