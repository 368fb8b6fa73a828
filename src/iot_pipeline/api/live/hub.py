"""The hub: one fan-out per API process. It numbers and buffers the readings both sources
hand it, and gives each client (its filter, its bounded queue) those it asked for."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from iot_pipeline.contracts.readings import reading_id
from iot_pipeline.settings import Settings

log = logging.getLogger("iot_pipeline.api.live")


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
class Client:
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
        self.clients: set[Client] = set()
        self.stats = HubStats()
        self.stopping = threading.Event()  # tells the Kafka thread to end
        self.loop: asyncio.AbstractEventLoop | None = None  # the event loop of the clients
        self._seq = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._thread: threading.Thread | None = None
        self._alone_since: float | None = time.monotonic()  # when the last client left

    # --- lifecycle ---------------------------------------------------------------------

    async def start(
        self,
        provisional: Callable[[LiveHub], None],
        durable: Callable[[LiveHub], Coroutine[Any, Any, None]],
    ) -> None:
        """Feed the hub: `provisional` in a thread of its own (a blocking Kafka consumer),
        `durable` as a task of the event loop (the Redis subscription)."""
        self.loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=provisional, args=(self,), name="live-kafka", daemon=True
        )
        self._thread.start()
        self._tasks.append(asyncio.create_task(durable(self), name="live-redis"))

    async def stop(self) -> None:
        self.stopping.set()
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

    def subscribe(self, wants: Filter, last_event_id: str | None) -> tuple[Client, list[Event]]:
        """Register a client; returns it and the buffered events it missed (after
        `last_event_id`, when that id is this process's and still buffered)."""
        client = Client(wants, asyncio.Queue(maxsize=self.settings.api_stream_client_queue))
        self.clients.add(client)
        self._alone_since = None
        return client, self.missed(wants, last_event_id)

    def unsubscribe(self, client: Client) -> None:
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
                self.note(f"document not sent: {type(exc).__name__}: {exc}")
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

    def note(self, error: str) -> None:
        """An upstream failure or a document not sent: logged and counted."""
        log.warning("live path: %s", error[:500])
        self.stats.errors += 1
