"""The live path: readings on the SSE stream within seconds, one upstream per API process.

Two sources feed one hub, whatever the number of clients:

- **provisional** readings: one Kafka consumer (no group membership, no commits) reads the
  sensor topic from its end, and each record goes through the cleaner with an empty state, so
  only the rules that need no history apply (schema, units, physical range, clock). Records
  the cleaner rejects are not sent (they reach the dead-letter topic through the batch).
- **durable** readings: the workers publish each bulk slice they stored on the Redis channel
  `<prefix>:live`. The stream sends the stored document again under the same `id` with
  `provisional: false`: it carries the batch's full verdict (spikes, stuck values,
  duplicates, cross-metric) and replaces the provisional one.

The hub numbers its events and keeps the last `API_STREAM_BUFFER` of them, so a client that
reconnects with `Last-Event-ID` gets everything it missed (or an `event: gap` when that is
older than the buffer, or from before this process started). Each client has a bounded queue
and its own filters, applied here; a client too slow to keep up is told (`event: overflow`) and
disconnected, and resumes from its last id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio
from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from iot_pipeline.cleaning import CleaningPolicy, RawRecord, clean_batch
from iot_pipeline.contracts.live import decode_stored, live_channel, stored_count
from iot_pipeline.contracts.readings import reading_document, reading_id
from iot_pipeline.errors import TransientError
from iot_pipeline.kafka_config import open_consumer
from iot_pipeline.schema import format_event_time
from iot_pipeline.settings import Settings

log = logging.getLogger("iot_pipeline.api.live")
PROVISIONAL_BATCH = "live"  # the batch_id of a provisional reading
BURST = 500  # events sent in one write at most


@dataclass(frozen=True)
class Event:
    """One reading as the stream sends it, with what the filters look at."""

    seq: int
    sensor_id: str
    district: str
    metric: str
    valid: bool
    flagged: bool
    text: str  # the SSE frame, without its id line


@dataclass(frozen=True)
class Filter:
    """What one client asked for (empty sets: everything)."""

    sensors: frozenset[str] = frozenset()
    districts: frozenset[str] = frozenset()
    metrics: frozenset[str] = frozenset()
    quality: str = "all"

    def __call__(self, event: Event) -> bool:
        if self.sensors and event.sensor_id not in self.sensors:
            return False
        if self.districts and event.district not in self.districts:
            return False
        if self.metrics and event.metric not in self.metrics:
            return False
        if self.quality == "valid":
            return event.valid
        if self.quality == "invalid":
            return not event.valid
        if self.quality == "flagged":
            return event.flagged
        return True


@dataclass(eq=False)  # each client is itself (hashable by identity)
class _Client:
    wants: Filter
    queue: asyncio.Queue[Event | None]
    overflowed: bool = False


@dataclass
class HubStats:
    """What the hub did since it started (exposed in /metrics and the bench)."""

    provisional: int = 0
    durable: int = 0
    dropped_clients: int = 0
    upstreams: int = 0  # sources running: 2 when both Kafka and Redis feed the hub
    last_provisional_lag: float = 0.0  # seconds from the record's Kafka time to the hub
    errors: int = 0  # upstream failures and documents that could not be sent
    skipped: int = 0  # upstream readings let go unread while no client listened (idle)


class LiveHub:
    """One fan-out per API process: N clients, one Kafka consumer, one Redis subscription."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.epoch = uuid.uuid4().hex[:8]  # ids of another process (or run) are not ours
        self.buffer: deque[Event] = deque(maxlen=settings.api_stream_buffer)
        self.clients: set[_Client] = set()
        self.stats = HubStats()
        self._seq = 0
        self._stop = threading.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._alone_since: float | None = time.monotonic()  # when the last client left

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._consume, name="live-kafka", daemon=True)
        self._thread.start()
        self._tasks.append(asyncio.create_task(self._subscribe(), name="live-redis"))

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in list(self.clients):
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    # --- clients -----------------------------------------------------------------------

    @property
    def full(self) -> bool:
        return len(self.clients) >= self.settings.api_stream_max_clients

    def subscribe(self, wants: Filter, last_event_id: str | None) -> tuple[_Client, list[Event]]:
        """Register a client; returns it and the buffered events it missed (after
        `last_event_id`, when that id is this process's and still buffered)."""
        client = _Client(wants, asyncio.Queue(maxsize=self.settings.api_stream_client_queue))
        self.clients.add(client)
        self._alone_since = None
        return client, self.missed(wants, last_event_id)

    def unsubscribe(self, client: _Client) -> None:
        self.clients.discard(client)
        if not self.clients:
            self._alone_since = time.monotonic()

    def idle(self) -> bool:
        """Whether no client has listened for API_STREAM_IDLE_SECONDS: upstream readings are
        then let go without cleaning, encoding or buffering them (see `skip`). Cleaning every
        reading of the sensor topic a second time for nobody would cost this process a large
        share of the machine under load."""
        limit = self.settings.api_stream_idle_seconds
        alone = self._alone_since
        return bool(limit) and alone is not None and time.monotonic() - alone >= limit

    def skip(self, count: int) -> None:
        """Let `count` upstream readings go unread (event loop thread only). They are
        numbered all the same and the buffer is emptied, so a stream resumed from before
        them is told there is a gap rather than silently missing them."""
        self._seq += count
        self.buffer.clear()
        self.stats.skipped += count

    def missed(self, wants: Filter, last_event_id: str | None) -> list[Event]:
        seq = self.parse_id(last_event_id)
        if seq is None:
            return []
        return [e for e in self.buffer if e.seq > seq and wants(e)]

    def resumable(self, last_event_id: str | None) -> bool:
        """Whether nothing after this id was lost: it is ours and the buffer reaches back."""
        seq = self.parse_id(last_event_id)
        if seq is None:
            return False
        oldest = self.buffer[0].seq if self.buffer else self._seq + 1
        return seq >= oldest - 1

    def parse_id(self, last_event_id: str | None) -> int | None:
        if not last_event_id or "-" not in last_event_id:
            return None
        epoch, _, number = last_event_id.partition("-")
        # ASCII digits only: "¹³".isdigit() is true, and int() refuses it
        if epoch != self.epoch or not (number.isascii() and number.isdigit()) or len(number) > 19:
            return None
        return int(number)

    def event_id(self, event: Event) -> str:
        return f"{self.epoch}-{event.seq}"

    # --- fan-out -----------------------------------------------------------------------

    def publish(self, documents: Iterable[dict[str, Any]], provisional: bool) -> None:
        """Number, buffer and hand each document to every client that wants it (event loop
        thread only)."""
        for doc in documents:
            try:
                doc_id = reading_id(str(doc["sensor_id"]), str(doc["event_id"]))
                body = {"id": doc_id, "provisional": provisional, **doc}
                text = f"event: reading\ndata: {json.dumps(body, ensure_ascii=False)}\n\n"
                event = Event(
                    seq=self._seq + 1,
                    sensor_id=str(doc["sensor_id"]),
                    district=str(doc["district"]),
                    metric=str(doc["metric"]),
                    valid=bool(doc["valid"]),
                    flagged=bool(doc["flags"]),
                    text=text,
                )
            except (KeyError, TypeError, ValueError) as exc:  # one document, not the batch
                self._note(f"document not sent: {type(exc).__name__}: {exc}")
                continue
            self._seq += 1
            self.buffer.append(event)
            for client in self.clients:
                if client.overflowed or not client.wants(event):
                    continue
                try:
                    client.queue.put_nowait(event)
                except asyncio.QueueFull:
                    client.overflowed = True
                    self.stats.dropped_clients += 1
            if provisional:
                self.stats.provisional += 1
            else:
                self.stats.durable += 1

    # --- provisional readings: Kafka, from the end ---------------------------------------

    def _consume(self) -> None:
        settings = self.settings
        topic = settings.kafka_sensor_data_topic
        policy = CleaningPolicy(max_ahead=timedelta(hours=settings.event_time_max_ahead_hours))
        consumer: Consumer | None = None
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = open_consumer(
                        settings,
                        f"{settings.etl_consumer_group}.live.{self.epoch}",
                        **{"auto.offset.reset": "latest"},
                    )
                    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
                    if not partitions:
                        raise KafkaException(f"topic {topic} has no partitions (yet)")
                    # from each partition's end as of now, resolved before the first fetch:
                    # once `upstreams` counts it, nothing produced later is missed
                    consumer.assign(
                        [
                            TopicPartition(topic, p, _end(consumer, TopicPartition(topic, p)))
                            for p in partitions
                        ]
                    )
                    self.stats.upstreams += 1
                messages = consumer.consume(num_messages=2000, timeout=0.2)
            except (KafkaException, KeyError) as exc:
                self._note(f"Kafka: {exc}; retrying")
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        consumer.close()
                    consumer = None
                    self.stats.upstreams -= 1
                self._stop.wait(2.0)
                continue
            records = [
                RawRecord(
                    m.value() or b"", topic, m.partition() or 0, m.offset() or 0, m.key(), _stamp(m)
                )
                for m in messages
                if m.error() is None
            ]
            if records:
                try:
                    self._forward(records, policy)
                except Exception as exc:  # a batch the cleaner let through but we cannot send
                    self._note(f"provisional batch dropped: {type(exc).__name__}: {exc}")
        if consumer is not None:
            consumer.close()
            self.stats.upstreams -= 1

    def _forward(self, records: list[RawRecord], policy: CleaningPolicy) -> None:
        if self.idle():
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self.skip, len(records))
            return
        now = datetime.now(UTC)
        cleaned = clean_batch(records, {}, now, policy)  # no history: stateless rules only
        ingest = format_event_time(now)
        docs = [reading_document(c, PROVISIONAL_BATCH, ingest) for c in cleaned.readings]
        stamps = [r.timestamp for r in records if r.timestamp]
        if stamps:
            self.stats.last_provisional_lag = round(time.time() - max(stamps), 3)
        if docs and self._loop is not None:
            self._loop.call_soon_threadsafe(self.publish, docs, True)

    # --- durable readings: the workers' Redis channel ------------------------------------

    async def _subscribe(self) -> None:
        channel = live_channel(self.settings.search_index_prefix)
        while True:
            client = redis.asyncio.Redis.from_url(self.settings.redis_url)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                self.stats.upstreams += 1
                try:
                    async for message in pubsub.listen():
                        data = message.get("data")
                        if self.idle() and isinstance(data, bytes | str):
                            self.skip(stored_count(data))
                            continue
                        docs = decode_stored(data)
                        if docs:
                            self.publish(docs, provisional=False)
                finally:
                    self.stats.upstreams -= 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis restarts: subscribe again
                self._note(f"Redis: {exc}; retrying")
                await asyncio.sleep(2.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                    await client.aclose()

    def _note(self, error: str) -> None:
        log.warning("live path: %s", error[:500])
        self.stats.errors += 1


def _end(consumer: Consumer, partition: TopicPartition) -> int:
    """The partition's high watermark now."""
    _, high = consumer.get_watermark_offsets(partition, timeout=10)
    return int(high)


def _stamp(message: Any) -> float | None:
    kind, millis = message.timestamp()
    return millis / 1000.0 if kind and millis > 0 else None


class StreamStalled(TransientError):
    """A client stopped reading: one write waited longer than the send timeout."""


class EventStream(StreamingResponse):
    """An SSE response that holds its client's slot from the moment the route reserved it
    (`hub.subscribe`, before the response starts: the client cap is never check-then-act)
    until the response ends, however it ends; and gives each write `send_timeout` seconds,
    so a client that stops reading frees its slot instead of holding it for ever."""

    def __init__(
        self,
        content: AsyncIterator[str],
        release: Callable[[], None],
        send_timeout: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.release = release
        self.send_timeout = send_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def timed(message: Message) -> None:
            try:
                await asyncio.wait_for(send(message), self.send_timeout)
            except TimeoutError as exc:
                raise StreamStalled from exc

        try:
            await super().__call__(scope, receive, timed)
        except* StreamStalled:
            log.info("live stream: a client stopped reading for %.0fs; closed", self.send_timeout)
        finally:
            self.release()
            closing = getattr(self.body_iterator, "aclose", None)
            if closing is not None:
                with contextlib.suppress(RuntimeError):  # still running: it ends by itself
                    await closing()


async def stream(
    hub: LiveHub,
    client: _Client,
    backlog: list[Event],
    gap: bool,
    is_disconnected: Callable[[], Any],
) -> AsyncIterator[str]:
    """One client's SSE frames: what it missed, then live events, heartbeats, and an end after
    API_STREAM_MAX_SECONDS (the browser reconnects with its last id). The route subscribed
    the client (its slot); it leaves the hub however the response ends."""
    settings = hub.settings
    deadline = time.monotonic() + settings.api_stream_max_seconds
    try:
        yield f"retry: 2000\n: connected {hub.epoch}\n\n"
        if gap:
            yield 'event: gap\ndata: {"detail": "events before this point are no longer buffered; read /readings for them"}\n\n'  # noqa: E501
        for event in backlog:
            yield f"id: {hub.event_id(event)}\n{event.text}"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                yield 'event: end\ndata: {"detail": "stream lifetime reached; reconnect"}\n\n'
                return
            try:
                item = await asyncio.wait_for(
                    client.queue.get(), min(settings.api_stream_heartbeat_seconds, remaining)
                )
            except TimeoutError:
                if await is_disconnected():
                    return
                yield ": keep-alive\n\n"
                continue
            if item is None:  # the server is stopping
                return
            # what else is waiting goes in the same write: one send per burst, not per event
            frames = [f"id: {hub.event_id(item)}\n{item.text}"]
            while len(frames) < BURST and not client.queue.empty():
                more = client.queue.get_nowait()
                if more is None:
                    yield "".join(frames)
                    return
                frames.append(f"id: {hub.event_id(more)}\n{more.text}")
            yield "".join(frames)
            if client.overflowed and client.queue.empty():
                yield 'event: overflow\ndata: {"detail": "too slow to keep up; reconnect with Last-Event-ID"}\n\n'  # noqa: E501
                return
    finally:
        hub.unsubscribe(client)


def metric_families(hub: LiveHub | None) -> list[Metric]:
    """The live path's figures for /metrics."""
    clients = GaugeMetricFamily("iot_api_stream_clients", "SSE clients of this API process")
    upstreams = GaugeMetricFamily(
        "iot_api_live_upstreams",
        "Sources feeding the live stream (Kafka consumer, Redis subscription), whatever the "
        "number of clients",
    )
    events = CounterMetricFamily(
        "iot_api_live_events",
        "Readings the live path received (skipped: let go unread while no client listened)",
        labels=["kind"],
    )
    dropped = CounterMetricFamily(
        "iot_api_stream_dropped_clients", "Clients disconnected for falling behind"
    )
    errors = CounterMetricFamily(
        "iot_api_live_errors", "Live-path upstream failures and documents not sent (logged)"
    )
    lag = GaugeMetricFamily(
        "iot_api_live_lag_seconds",
        "Seconds from the newest provisional record's Kafka time to the hub, last batch",
    )
    stats = hub.stats if hub is not None else HubStats()
    clients.add_metric([], len(hub.clients) if hub is not None else 0)
    upstreams.add_metric([], stats.upstreams)
    events.add_metric(["provisional"], stats.provisional)
    events.add_metric(["durable"], stats.durable)
    events.add_metric(["skipped"], stats.skipped)
    dropped.add_metric([], stats.dropped_clients)
    errors.add_metric([], stats.errors)
    lag.add_metric([], stats.last_provisional_lag)
    return [clients, upstreams, events, dropped, errors, lag]
