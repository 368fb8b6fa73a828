"""The durable half of the live stream: each slice of readings a worker stored is published
on a Redis channel, so the API's live hub can send the stored version of readings it already
sent provisionally (same id, the batch's full verdict) without polling the search store.

The message, both ways: `encode_stored` (the worker's publisher) writes at most `CHUNK`
stored documents, one JSON object per line; `decode_stored` (the API) reads them back,
skipping a line that is not a reading's document rather than the message.

Best effort by design: the store holds every reading whatever happens here, so a Redis
failure is logged and never fails a range.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable
from typing import Any

import redis

from iot_pipeline.storage import IndexAction, IndexReport
from iot_pipeline.storage.base import encoded_document

log = logging.getLogger(__name__)
CHUNK = 1000  # documents per message
REQUIRED = frozenset({"sensor_id", "event_id", "district"})  # what the hub needs of a document


def live_channel(prefix: str) -> str:
    """The Redis channel of stored readings (one per index prefix, so per pipeline)."""
    return f"{prefix}:live"


def encode_stored(documents: Iterable[bytes]) -> bytes:
    """One message: stored documents, each one JSON object, one per line (the publisher
    passes the bytes its bulk request carried, and cuts messages of at most CHUNK)."""
    return b"\n".join(documents)


def decode_stored(data: object) -> list[dict[str, Any]]:
    """A message's stored documents; a line that is not JSON, not an object or lacks one of
    the REQUIRED keys is skipped, and anything but bytes or text is no documents."""
    if not isinstance(data, bytes | str):
        return []
    lines = data.splitlines() if isinstance(data, bytes) else data.encode().splitlines()
    out = []
    for line in lines:
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if isinstance(doc, dict) and doc.keys() >= REQUIRED:
                out.append(doc)
    return out


def stored_count(data: bytes | str) -> int:
    """How many documents a message carries, without decoding them (one per line)."""
    return len(data.splitlines())


def publish_stored(
    client: redis.Redis, prefix: str, actions: list[IndexAction], report: IndexReport
) -> int:
    """Publish the documents of `actions` the store accepted, in messages of at most CHUNK,
    when an API listens on the channel; returns how many were published."""
    channel = live_channel(prefix)
    try:
        listening = client.pubsub_numsub(channel)  # nobody listening: no work on this slice
        if not listening or not int(listening[0][1]):
            return 0
        refused = {failure.action.id for failure in report.rejected}
        documents = [encoded_document(a) for a in actions if a.id not in refused]
        for start in range(0, len(documents), CHUNK):
            client.publish(channel, encode_stored(documents[start : start + CHUNK]))
    except redis.RedisError as exc:
        log.warning("live feed: %d stored readings not published: %s", len(actions), exc)
        return 0
    return len(documents)
