"""Chaos tests: faults injected into the running native stack while the scheduled pipeline
drains a known backlog. They need the stack started by `make up` (supervisord)."""

from pathlib import Path

import pytest

from support.recovery_log import RESULTS

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def _require_stack(stack_ready: None) -> None:
    """Every chaos test needs the stack."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.section("chaos: recovery per fault")
        for line in RESULTS:
            terminalreporter.write_line(line)
