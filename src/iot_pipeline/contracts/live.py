"""The durable half of the live stream: each slice of readings a worker stored is published
on a Redis channel, so the API's live hub can send the stored version of readings it already
sent provisionally (same id, the batch's full verdict) without polling the search store.

Best effort by design: the store holds every reading whatever happens here, so a Redis
failure is logged and never fails a range.
"""

from __future__ import annotations

import logging

import redis

from iot_pipeline.storage import IndexAction, IndexReport

log = logging.getLogger(__name__)
CHUNK = 1000  # documents per message


def live_channel(prefix: str) -> str:
    """The Redis channel of stored readings (one per index prefix, so per pipeline)."""
    return f"{prefix}:live"


def publish_stored(
    client: redis.Redis, prefix: str, actions: list[IndexAction], report: IndexReport
) -> int:
    """Publish the documents of `actions` the store accepted, one JSON object per line, when
    an API listens on the channel; returns how many were published."""
    channel = live_channel(prefix)
    try:
        listening = client.pubsub_numsub(channel)  # nobody listening: no work on this slice
        if not listening or not int(listening[0][1]):
            return 0
        refused = {failure.action.id for failure in report.rejected}
        lines = [
            action.encoded.split(b"\n", 2)[1]
            for action in actions
            if action.encoded is not None and action.id not in refused
        ]
        for start in range(0, len(lines), CHUNK):
            client.publish(channel, b"\n".join(lines[start : start + CHUNK]))
    except redis.RedisError as exc:
        log.warning("live feed: %d stored readings not published: %s", len(actions), exc)
        return 0
    return len(lines)
