"""The pipeline's own Python processes: the simulator, the Celery worker and the REST API."""

from __future__ import annotations

import sys
from pathlib import Path

from iot_pipeline.contracts.probes import (
    WORKER_NODE,
    Health,
    api_health,
    heartbeat_health,
    worker_health,
)
from iot_pipeline.settings import StackSettings
from iot_pipeline.stack.model import Service, StackPaths


def generator_service(settings: StackSettings, paths: StackPaths, workdir: Path) -> Service:
    command = [
        sys.executable,
        str(workdir / "data_generator" / "producer.py"),
        "live",
        "--progress-every",
        "60",
    ]
    beat = paths.run / "generator.heartbeat"  # touched every round: proof that it produces

    def probe(s: StackSettings) -> Health:
        return heartbeat_health(beat, s.data_generator_interval_seconds)

    environment = {"DATA_GENERATOR_HEARTBEAT_FILE": str(beat)}
    return Service("generator", None, command, probe, phase=1, environment=environment)


def worker_service(settings: StackSettings, workdir: Path) -> Service:
    command = [
        sys.executable,
        str(workdir / "celery" / "tasks" / "worker.py"),
        "--concurrency",
        str(settings.worker_concurrency),
        "--hostname",
        WORKER_NODE,
    ]
    return Service("worker", None, command, worker_health, phase=1)


def api_service(settings: StackSettings) -> Service:
    # the server with the API's edge: head size and deadline, keep-alive, concurrency bound
    command = [
        sys.executable,
        "-m",
        "iot_pipeline.api.serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(settings.api_port),
    ]
    return Service("api", ("127.0.0.1", settings.api_port), command, api_health, phase=1)
