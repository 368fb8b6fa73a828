"""The REST API as `make up` runs it (uvicorn, a process of its own) for tests."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from iot_pipeline.settings import Settings

from support.waiting import eventually
from support.workers import ROOT, settings_env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_api(settings: Settings, **extra_env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        # as `make up` runs it (iot_pipeline.api.serve: the server with the API's edge)
        [
            sys.executable,
            "-m",
            "iot_pipeline.api.serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=settings_env(settings, **extra_env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.poll() is None, "the API exited at start"
        return httpx.get(f"{url}/health", timeout=1).status_code == 200

    eventually(healthy, 60, "the API's start", ignoring=(httpx.HTTPError,))
    return process, url


def stop_api(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


def metric_value(url: str, name: str, headers: dict[str, str] | None = None) -> float:
    """One unlabelled sample of the API's /metrics."""
    text = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    assert values, f"{name} not in /metrics"
    return values[0]


def wait_live(url: str, headers: dict[str, str] | None = None) -> None:
    """Until the API's live hub reads Kafka from its end and listens on Redis (both
    upstreams): from then on, nothing produced reaches the stream late or never."""
    eventually(
        lambda: metric_value(url, "iot_api_live_upstreams", headers) >= 2,
        30,
        "the live path's start",
        interval=0.1,
    )


@contextmanager
def api_client(settings: Settings, **extra_env: str) -> Iterator[httpx.Client]:
    """A client of an API process of its own, with these settings (and environment)."""
    process, url = start_api(settings, **extra_env)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client
    finally:
        stop_api(process)
