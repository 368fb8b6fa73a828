"""A pipeline process that crashes comes back by itself: supervisord starts it again and it is
healthy (the worker answers a ping, the API is ready, the scheduler beats) within 30 s."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime

import pytest

from iot_pipeline.contracts.probes import api_health, local_json, worker_health
from iot_pipeline.settings import StackSettings
from iot_pipeline.stack.airflow_services import component_health
from iot_pipeline.stack.model import StackPaths
from iot_pipeline.stack.supervisor import Supervisor

from support.waiting import eventually

BACK_WITHIN = 30.0


def _scheduler_beat(settings: StackSettings) -> datetime | None:
    body, failed = local_json(settings.airflow_port, "/api/v2/monitor/health", "Airflow")
    beat = None if failed else (body.get("scheduler") or {}).get("latest_scheduler_heartbeat")
    return datetime.fromisoformat(beat) if beat else None


@pytest.mark.parametrize("name", ["worker", "api", "airflow-scheduler"])
def test_a_crashed_process_is_back_and_healthy_within_30_s(
    name: str, base_settings: StackSettings
) -> None:
    supervisor = Supervisor(StackPaths.from_settings(base_settings))
    if not supervisor.is_running() or supervisor.state(name) != "RUNNING":
        pytest.skip(f"{name} is not run by this stack's supervisord")
    probe = {
        "worker": worker_health,
        "api": api_health,
        "airflow-scheduler": component_health("scheduler"),
    }[name]
    assert probe(base_settings).ok, f"{name} unhealthy before the crash"
    restarts = supervisor.restarts().get(name, 0)
    pid = supervisor.pid(name)

    os.kill(pid, signal.SIGKILL)  # the main process only, as a crash or the OOM killer would
    crashed_at = datetime.now(UTC)

    def back() -> bool:
        if supervisor.state(name) != "RUNNING" or supervisor.pid(name) in (0, pid):
            return False
        if name == "airflow-scheduler":  # a heartbeat of the new scheduler, not the old one
            beat = _scheduler_beat(base_settings)
            return beat is not None and beat > crashed_at and probe(base_settings).ok
        return probe(base_settings).ok

    try:
        eventually(back, BACK_WITHIN, f"{name} back", interval=0.5)
    except AssertionError as failure:
        raise AssertionError(
            f"{failure}; supervisord {supervisor.state(name)}, probe: {probe(base_settings).detail}"
        ) from None
    assert supervisor.restarts().get(name, 0) == restarts + 1  # and `make status` counts it
    assert _group_members(pid) == [], "processes of the crashed start were left running"


def _group_members(pgid: int) -> list[str]:
    import psutil

    members = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if os.getpgid(process.pid) == pgid:
                members.append(" ".join(process.info["cmdline"] or [])[:80])
        except (ProcessLookupError, psutil.Error):
            continue
    return members
