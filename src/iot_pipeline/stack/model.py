"""The native stack's vocabulary: its folders, what one supervised service is, its errors."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from iot_pipeline.contracts.probes import Health
from iot_pipeline.errors import ConfigurationError
from iot_pipeline.settings import StackSettings


class StackError(ConfigurationError):
    """The native stack cannot do what was asked; the message says what to do."""


@dataclass(frozen=True)
class StackPaths:
    """The folders under STACK_DIR: jars, data, logs and generated run files."""

    root: Path

    @classmethod
    def from_settings(cls, settings: StackSettings) -> StackPaths:
        return cls(settings.stack_dir.resolve())

    @property
    def lib(self) -> Path:
        return self.root / "lib"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    def log_of(self, service: str) -> Path:
        return self.logs / f"{service}.log"


@dataclass(frozen=True)
class Service:
    """One supervised process of the native stack.

    Phase 0 holds the backing services (they listen on an address and have a probe); phase 1
    holds the pipeline's own processes, started once the topics exist. A service is healthy
    when its probe says so (the worker answers a ping, a component's heartbeat is fresh); one
    without a probe when supervisord reports it RUNNING.
    """

    name: str
    address: tuple[str, int] | None
    command: list[str]
    probe: Callable[[StackSettings], Health] | None
    prepare: Callable[[], None] = field(default=lambda: None)
    phase: int = 0
    environment: dict[str, str] = field(default_factory=dict)


def require_loopback(what: str, host: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise StackError(
            f"the native stack binds to loopback only, but {what} points at {host!r}; "
            "use 127.0.0.1 for local runs"
        )
