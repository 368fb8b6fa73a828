"""Process logging: one JSON object per line naming the service (and the batch, when known).

`docker compose logs -f` interleaves every container's output; a line that carries
`service` and `batch_id` can be filtered (`jq 'select(.batch_id == "...")'`) and shipped as
is. `LOG_FORMAT=text` gives a plain, human line instead (interactive runs).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["json", "text"]

# Fields bound to everything logged in the current context (a task, a request).
_context: ContextVar[Mapping[str, Any] | None] = ContextVar("iot_log_context", default=None)


def bind(**fields: Any) -> Token[Mapping[str, Any] | None]:
    """Add `fields` to every line logged from now on in this context; `unbind` undoes it."""
    return _context.set({**(_context.get() or {}), **fields})


def unbind(token: Token[Mapping[str, Any] | None]) -> None:
    _context.reset(token)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add `fields` (e.g. batch_id) to every line logged inside the block."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = dict(_context.get() or {})
    fields.update(getattr(record, "fields", {}))
    return fields


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message, bound fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_extra_fields(record))
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextLines(logging.Formatter):
    """`time level [service] message key=value...` for people reading a terminal."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        fields = " ".join(f"{k}={v}" for k, v in _extra_fields(record).items())
        text = f"{when} {record.levelname:<7} [{self.service}] {record.getMessage()}"
        if fields:
            text += f"  {fields}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def formatter(service: str, log_format: LogFormat = "json") -> logging.Formatter:
    return JsonLines(service) if log_format == "json" else TextLines(service)


def configure(service: str, log_format: LogFormat = "json", level: int = logging.INFO) -> None:
    """Send every logger's records to stdout in `log_format` (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "iot_service", None) is not None:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter(service, log_format))
    handler.iot_service = service  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # Servers that install their own handlers (uvicorn does before importing the app):
    # route them through ours so every line of the process has the same shape.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        logger = logging.getLogger(name)
        if logger.handlers:  # a disabled access log has none and does not propagate
            logger.handlers.clear()
            logger.propagate = True
    # Third-party chatter at INFO drowns the pipeline's own lines.
    for noisy in ("elastic_transport", "opensearch", "urllib3", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
