"""The scheduled `iot_sensor_etl` of the running native stack keeps up with the live
simulator: whatever was in the topic at some instant is committed within two intervals."""

from __future__ import annotations

import time

import pytest

from iot_pipeline.contracts.positions import positions
from iot_pipeline.settings import Settings
from iot_pipeline.stack.model import StackPaths
from iot_pipeline.stack.supervisor import Supervisor

INTERVAL = 60.0  # the default schedule, "* * * * *"


def _group(settings: Settings) -> dict[int, tuple[int, int]]:
    """partition -> (committed, high watermark) of the live ETL group."""
    return {
        p.partition: (p.committed, p.high)
        for p in positions(settings, settings.kafka_sensor_data_topic, settings.etl_consumer_group)
    }


def test_scheduled_runs_keep_the_lag_within_two_intervals(base_settings: Settings) -> None:
    supervisor = Supervisor(StackPaths.from_settings(base_settings))
    states = {n: supervisor.state(n) for n in ("airflow-scheduler", "generator")}
    if any(state != "RUNNING" for state in states.values()):
        pytest.skip(f"the running stack was started without the scheduler or simulator: {states}")
    if base_settings.etl_schedule != "* * * * *":
        pytest.skip(f"measured for the default schedule, not {base_settings.etl_schedule!r}")

    # The first scheduled run may still be ahead (the DAG is parsed at start-up).
    deadline = time.monotonic() + 4 * INTERVAL
    while not all(c > 0 for c, _ in _group(base_settings).values()):
        assert time.monotonic() < deadline, f"no run committed anything: {_group(base_settings)}"
        time.sleep(2)

    target = {p: high for p, (_, high) in _group(base_settings).items()}
    started = time.monotonic()
    while True:
        now = _group(base_settings)
        behind = {p: target[p] - c for p, (c, _) in now.items() if c < target[p]}
        if not behind:
            break
        waited = time.monotonic() - started
        assert waited < 2 * INTERVAL, f"still behind after {waited:.0f}s: {behind}"
        time.sleep(2)
