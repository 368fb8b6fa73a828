"""Process log lines: JSON with service and bound batch id, or plain text."""

from __future__ import annotations

import json
import logging

from iot_pipeline.logs import JsonLines, TextLines, bound


def _record(message: str, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("iot_pipeline.test")
    return logger.makeRecord(logger.name, logging.INFO, __file__, 1, message, (), None, extra=extra)


def test_json_line_names_service_and_bound_batch() -> None:
    formatter = JsonLines("worker")
    with bound(batch_id="b-42", range="iot:3[10, 20)"):
        line = json.loads(formatter.format(_record("processed", fields={"indexed": 7})))
    assert line["service"] == "worker"
    assert line["level"] == "info"
    assert line["message"] == "processed"
    assert line["batch_id"] == "b-42"
    assert line["range"] == "iot:3[10, 20)"
    assert line["indexed"] == 7
    # Outside the block the batch is gone again.
    assert "batch_id" not in json.loads(formatter.format(_record("idle")))


def test_nested_bindings_add_and_restore() -> None:
    formatter = JsonLines("api")
    with bound(batch_id="outer"):
        with bound(batch_id="inner", request_id="r1"):
            inner = json.loads(formatter.format(_record("x")))
        outer = json.loads(formatter.format(_record("y")))
    assert (inner["batch_id"], inner["request_id"]) == ("inner", "r1")
    assert outer["batch_id"] == "outer"
    assert "request_id" not in outer


def test_exception_is_one_json_line() -> None:
    try:
        raise ValueError("bad reading")
    except ValueError:
        import sys

        record = _record("failed")
        record.exc_info = sys.exc_info()
    text = JsonLines("generator").format(record)
    assert "\n" not in text
    assert "ValueError: bad reading" in json.loads(text)["error"]


def test_text_line_for_terminals() -> None:
    with bound(batch_id="b-1"):
        text = TextLines("generator").format(_record("sent 10"))
    assert "[generator] sent 10" in text
    assert "batch_id=b-1" in text
