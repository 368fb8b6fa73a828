"""The live channel's message, both ways: what the worker publishes (`encode_stored`, in
`publish_stored`) is what the API reads back (`decode_stored`), and a bad line costs only
itself."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from iot_pipeline.contracts.live import (
    CHUNK,
    decode_stored,
    encode_stored,
    live_channel,
    publish_stored,
    stored_count,
)
from iot_pipeline.contracts.readings import reading_id
from iot_pipeline.storage import IndexAction, IndexReport, ItemFailure
from iot_pipeline.storage.base import encode_action


def _doc(i: int, **change: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": f"e-{i}",
        "sensor_id": f"casa-anfa-0{i % 2 + 1}-pm25",
        "district": "Anfa",
        "metric": "pm25",
        "value": 18.4 + i,
        "unit": "µg/m³",
        "valid": True,
        "flags": ["spike"] if i % 3 == 0 else [],
        "location": {"lat": 33.5731, "lon": -7.6298},
        "event_time": "2026-11-28T10:15:05.000Z",
    }
    return {**doc, **change}


def _action(doc: dict[str, Any]) -> IndexAction:
    doc_id = reading_id(doc["sensor_id"], doc["event_id"])
    encoded = encode_action("create", "iot-readings-2026.11.28", doc_id, doc)
    return IndexAction("iot-readings-2026.11.28", doc_id, doc, op="create", encoded=encoded)


def test_the_stored_documents_come_back_as_they_went() -> None:
    documents = [_doc(i) for i in range(5)]
    message = encode_stored(orjson.dumps(d) for d in documents)
    assert decode_stored(message) == documents
    assert decode_stored(message.decode()) == documents  # a client decoding responses
    assert stored_count(message) == 5
    assert encode_stored([]) == b""
    assert decode_stored(b"") == []


def test_a_message_is_the_lines_the_bulk_request_carried() -> None:
    """The message is byte for byte what the worker's bulk request stored of each document."""
    actions = [_action(_doc(i)) for i in range(3)]
    lines = [a.encoded.split(b"\n", 2)[1] for a in actions if a.encoded is not None]
    assert encode_stored(orjson.dumps(a.document) for a in actions) == b"\n".join(lines)


@pytest.mark.parametrize(
    "bad",
    [
        b"not json",
        b"[1, 2]",
        b'"text"',
        b'{"sensor_id": "s", "event_id": "e"}',  # no district
        b"{truncated",
        b"\xff\xfe",
    ],
)
def test_a_malformed_line_is_skipped_not_the_message(bad: bytes) -> None:
    documents = [_doc(1), _doc(2)]
    first, second = encode_stored(orjson.dumps(d) for d in documents).split(b"\n")
    assert decode_stored(b"\n".join([first, bad, second])) == documents


@pytest.mark.parametrize("data", [None, 1, ["a"], {"data": b"{}"}])
def test_anything_but_bytes_or_text_is_no_documents(data: object) -> None:
    assert decode_stored(data) == []


class _Redis:
    """What publish_stored uses of a Redis client."""

    def __init__(self, listeners: int) -> None:
        self.listeners = listeners
        self.sent: list[tuple[str, bytes]] = []

    def pubsub_numsub(self, channel: str) -> list[tuple[bytes, int]]:
        return [(channel.encode(), self.listeners)]

    def publish(self, channel: str, data: bytes) -> int:
        self.sent.append((channel, data))
        return self.listeners


def test_the_publisher_sends_what_was_stored_in_bounded_messages() -> None:
    documents = [_doc(i) for i in range(CHUNK + 3)]
    actions = [_action(d) for d in documents]
    refused = ItemFailure(actions[1], 400, "mapper_parsing_exception", "bad value")
    client = _Redis(listeners=1)
    sent = publish_stored(client, "iot", actions, IndexReport(rejected=[refused]))  # type: ignore[arg-type]
    assert sent == CHUNK + 2
    assert [channel for channel, _ in client.sent] == [live_channel("iot")] * 2
    assert [stored_count(data) for _, data in client.sent] == [CHUNK, 2]
    received = [doc for _, data in client.sent for doc in decode_stored(data)]
    assert received == [d for i, d in enumerate(documents) if i != 1]


def test_with_nobody_listening_the_publisher_does_no_work() -> None:
    client = _Redis(listeners=0)
    assert publish_stored(client, "iot", [_action(_doc(1))], IndexReport()) == 0  # type: ignore[arg-type]
    assert client.sent == []
