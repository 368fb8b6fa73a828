"""Chaos tests: faults injected into the running native stack while the scheduled pipeline
drains a known backlog. They need the stack started by `make up` (supervisord)."""

import pytest

from support.recovery_log import RESULTS


@pytest.fixture(autouse=True)
def _require_stack(stack_ready: None) -> None:
    """Every chaos test needs the stack."""


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.section("chaos: recovery per fault")
        for line in RESULTS:
            terminalreporter.write_line(line)
