"""Durable readings: the hub's one subscription to the workers' Redis channel of stored
readings (the message: `contracts.live`). Each stored document is sent again under its id
with `provisional: false`, the batch's full verdict replacing the provisional one."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import redis.asyncio

from iot_pipeline.contracts.live import decode_stored, live_channel, stored_count

if TYPE_CHECKING:
    from iot_pipeline.api.live.hub import LiveHub


async def listen(hub: LiveHub) -> None:
    """Hand each message's documents to the hub until cancelled (while the hub is idle, only
    count them); when Redis fails, subscribe again after 2 s."""
    channel = live_channel(hub.settings.search_index_prefix)
    while True:
        client = redis.asyncio.Redis.from_url(hub.settings.redis_url)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            hub.stats.upstreams += 1
            try:
                async for message in pubsub.listen():
                    data = message.get("data")
                    if hub.idle() and isinstance(data, bytes | str):
                        hub.skip(stored_count(data))
                        continue
                    docs = decode_stored(data)
                    if docs:
                        hub.publish(docs, provisional=False)
            finally:
                hub.stats.upstreams -= 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis restarts: subscribe again
            hub.note(f"Redis: {exc}; retrying")
            await asyncio.sleep(2.0)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                await client.aclose()
