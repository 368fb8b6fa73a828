"""Container health checks: `python -m iot_pipeline.container.health <api|worker|generator>`.

Exit status 0 when healthy, 1 otherwise, with one line saying why (docker shows the last
lines in `docker inspect`). The API check is the native stack's probe; the worker answers a
Celery ping addressed to itself; the simulator proves its loop runs by a fresh heartbeat.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Sequence

from iot_pipeline.settings import Settings
from iot_pipeline.stack.probes import Health, api_health


def worker_health(settings: Settings) -> Health:
    """This container's Celery worker (`worker@<hostname>`) answers a ping through Redis."""
    from iot_pipeline.worker.app import create_app

    node = f"worker@{socket.gethostname()}"
    app = create_app(settings)
    try:
        replies = app.control.ping(destination=[node], timeout=5.0)
    except Exception as exc:  # broker unreachable, ...: unhealthy, not a crash
        return Health(False, f"cannot ping {node}: {exc}")
    finally:
        app.close()
    if not any(node in reply for reply in replies or []):
        return Health(False, f"{node} did not answer a ping within 5 s")
    return Health(True, f"{node} answers")


def generator_health(settings: Settings) -> Health:
    """The heartbeat file was touched within three rounds (at least 30 s)."""
    path = settings.data_generator_heartbeat_file
    if path is None:
        return Health(False, "DATA_GENERATOR_HEARTBEAT_FILE is not set")
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return Health(False, f"no heartbeat yet at {path}")
    limit = max(30.0, 3 * settings.data_generator_interval_seconds)
    if age > limit:
        return Health(False, f"last round {age:.0f} s ago (limit {limit:.0f} s)")
    return Health(True, f"last round {age:.0f} s ago")


CHECKS: dict[str, Callable[[Settings], Health]] = {
    "api": api_health,
    "worker": worker_health,
    "generator": generator_health,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] not in CHECKS:
        print(f"usage: python -m iot_pipeline.container.health <{'|'.join(CHECKS)}>")
        return 2
    health = CHECKS[args[0]](Settings())
    print(f"{args[0]}: {'healthy' if health.ok else 'unhealthy'}: {health.detail}")
    return 0 if health.ok else 1


if __name__ == "__main__":
    sys.exit(main())
