"""The scheduled `iot_sensor_etl` of the running native stack keeps up with the live
simulator: whatever was in the topic at some instant is committed within two intervals."""

from __future__ import annotations

import pytest

from iot_pipeline.contracts.positions import positions
from iot_pipeline.settings import StackSettings
from iot_pipeline.stack.model import StackPaths
from iot_pipeline.stack.supervisor import Supervisor

from support.waiting import eventually

INTERVAL = 60.0  # the default schedule, "* * * * *"


def _group(settings: StackSettings) -> dict[int, tuple[int, int]]:
    """partition -> (committed, high watermark) of the live ETL group."""
    return {
        p.partition: (p.committed, p.high)
        for p in positions(settings, settings.kafka_sensor_data_topic, settings.etl_consumer_group)
    }


def test_scheduled_runs_keep_the_lag_within_two_intervals(base_settings: StackSettings) -> None:
    supervisor = Supervisor(StackPaths.from_settings(base_settings))
    states = {n: supervisor.state(n) for n in ("airflow-scheduler", "generator")}
    if any(state != "RUNNING" for state in states.values()):
        pytest.skip(f"the running stack was started without the scheduler or simulator: {states}")
    if base_settings.etl_schedule != "* * * * *":
        pytest.skip(f"measured for the default schedule, not {base_settings.etl_schedule!r}")

    # The first scheduled run may still be ahead (the DAG is parsed at start-up).
    def committed_anything() -> bool:
        group = _group(base_settings)
        assert all(c > 0 for c, _ in group.values()), f"no run committed anything: {group}"
        return True

    eventually(
        committed_anything,
        4 * INTERVAL,
        "a first scheduled run",
        interval=2,
        ignoring=(AssertionError,),
    )

    target = {p: high for p, (_, high) in _group(base_settings).items()}

    def caught_up() -> bool:
        now = _group(base_settings)
        behind = {p: target[p] - c for p, (c, _) in now.items() if c < target[p]}
        assert not behind, f"still behind: {behind}"
        return True

    eventually(
        caught_up,
        2 * INTERVAL,
        "the topic's content of an instant committed",
        interval=2,
        ignoring=(AssertionError,),
    )
