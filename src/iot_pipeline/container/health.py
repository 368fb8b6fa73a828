"""Container health checks: `python -m iot_pipeline.container.health <api|worker|generator>`.

Exit status 0 when healthy, 1 otherwise, with one line saying why (docker shows the last
lines in `docker inspect`). The API check is the native stack's probe; the worker answers a
Celery ping addressed to itself; the simulator proves its loop runs by a fresh heartbeat.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from iot_pipeline.contracts.probes import Health, api_health, heartbeat_health, worker_health
from iot_pipeline.settings import Settings


def generator_health(settings: Settings) -> Health:
    """The heartbeat file was touched within three rounds (at least 30 s)."""
    return heartbeat_health(
        settings.data_generator_heartbeat_file, settings.data_generator_interval_seconds
    )


CHECKS: dict[str, Callable[[Settings], Health]] = {
    "api": api_health,
    "worker": lambda settings: worker_health(settings, timeout=5.0),
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
