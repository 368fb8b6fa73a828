"""The live path: readings on the SSE stream within seconds, one upstream per API process.

Two sources feed one hub, whatever the number of clients:

- **provisional** readings (`provisional`): one Kafka consumer (no group membership, no
  commits) reads the sensor topic from its end, and each record goes through the cleaner with
  an empty state, so only the rules that need no history apply (schema, units, physical range,
  clock). Records the cleaner rejects are not sent (they reach the dead-letter topic through
  the batch).
- **durable** readings (`stored`): the workers publish each bulk slice they stored on the
  Redis channel `<prefix>:live` (the message: `contracts.live`). The stream sends the stored
  document again under the same `id` with `provisional: false`: it carries the batch's full
  verdict (spikes, stuck values, duplicates, cross-metric) and replaces the provisional one.

The hub (`hub`) numbers its events and keeps the last `API_STREAM_BUFFER` of them, so a client
that reconnects with `Last-Event-ID` gets everything it missed (or an `event: gap` when that is
older than the buffer, or from before this process started). Each client has a bounded queue
and its own filters, applied there; a client too slow to keep up is told (`event: overflow`)
and disconnected, and resumes from its last id. `sse` frames a client's events as the
response; `metrics` gives the hub's figures to /metrics.
"""

from iot_pipeline.api.live.hub import Filter, LiveHub
from iot_pipeline.api.live.metrics import metric_families
from iot_pipeline.api.live.provisional import consume
from iot_pipeline.api.live.sse import EventStream, stream
from iot_pipeline.api.live.stored import listen


async def start(hub: LiveHub) -> None:
    """Start the hub on its two sources: Kafka (provisional) and Redis (durable)."""
    await hub.start(consume, listen)


__all__ = ["EventStream", "Filter", "LiveHub", "metric_families", "start", "stream"]
