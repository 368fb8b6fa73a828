"""Drive a ReadingStream into Kafka: pacing, backpressure, delivery accounting, shutdown."""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, Literal, TextIO

import numpy as np
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from iot_pipeline.errors import ConfigurationError
from iot_pipeline.generator.faults import FaultRates
from iot_pipeline.generator.network import build_network
from iot_pipeline.generator.stream import ReadingStream, Round
from iot_pipeline.kafka_config import producer_config
from iot_pipeline.settings import Settings

log = logging.getLogger("iot_pipeline.generator")
Mode = Literal["live", "backfill"]
BACKFILL_CHUNK_READINGS = 20_000


class GeneratorError(ConfigurationError):
    """The generator cannot run as asked; the message says why and what to do."""


@dataclass(frozen=True)
class RunConfig:
    """One run of the simulator."""

    mode: Mode
    topic: str
    seed: int
    interval: float
    count: int | None = None
    duration: float | None = None
    start: datetime | None = None
    end: datetime | None = None
    stations_per_district: int = 2
    coarse_fraction: float = 0.0  # sensors reporting whole units or whole degF (network.py)
    rates: FaultRates = field(default_factory=FaultRates)
    labels_path: Path | None = None
    progress_every: float = 5.0
    compression: str = "lz4"


@dataclass
class RunStats:
    """What a run did; `acked` is exact once the producer is flushed."""

    sent: int = 0
    sent_bytes: int = 0
    readings: int = 0
    failed: int = 0
    faulty: int = 0
    backpressure_waits: int = 0
    elapsed: float = 0.0
    unflushed: int = 0
    first_error: str = ""

    @property
    def acked(self) -> int:
        return self.sent - self.failed - self.unflushed

    def summary(self, config: RunConfig) -> str:
        rate = self.sent / self.elapsed if self.elapsed > 0 else 0.0
        labels = str(config.labels_path) if config.labels_path else "-"
        return (
            f"generator done: mode={config.mode} sent={self.sent} readings={self.readings} "
            f"acked={self.acked} failed={self.failed} faulty={self.faulty} bytes={self.sent_bytes} "
            f"rate={rate:.0f}/s elapsed={self.elapsed:.2f}s seed={config.seed} "
            f"topic={config.topic} labels={labels} queue_full_waits={self.backpressure_waits}"
        )


class _StopFlag:
    def __init__(self) -> None:
        self.stopped = False

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.stopped = True


def _make_producer(settings: Settings, config: RunConfig, stats: RunStats) -> Producer:
    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            stats.failed += 1
            stats.first_error = stats.first_error or str(err)

    options: dict[str, Any] = producer_config(
        settings,
        **{
            "compression.type": config.compression,
            "linger.ms": 25,
            "batch.size": 1_000_000,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 512 * 1024,
            # Successes are counted as sent minus failures once flushed: one Python callback
            # per message would cost a quarter of the throughput.
            "delivery.report.only.error": True,
            "on_delivery": on_delivery,
            "log_level": 2,
        },
    )
    return Producer(options)


def check_broker(producer: Producer, settings: Settings, topic: str, timeout: float) -> int:
    """Fail clearly when the broker is unreachable or the topic missing; returns partitions."""
    try:
        metadata = producer.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise GeneratorError(
            f"cannot reach Kafka at {settings.kafka_brokers} ({exc.args[0].str()}); "
            "is it running? (`make up`, or set KAFKA_BROKERS)"
        ) from None
    described = metadata.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        raise GeneratorError(
            f"topic {topic!r} does not exist on {settings.kafka_brokers}; create it with "
            "`make up` or `python -m iot_pipeline.topics`"
        )
    return len(described.partitions)


def _round_times(config: RunConfig, network_size: int) -> Iterator[np.ndarray]:
    """Backfill: chunks of event times from start to end (or for ever when count-bounded)."""
    if config.start is None:
        raise GeneratorError("backfill needs a start time")
    start = config.start.timestamp()
    end = config.end.timestamp() if config.end else float("inf")
    per_chunk = max(1, BACKFILL_CHUNK_READINGS // network_size)
    k = 0
    while True:
        times = start + config.interval * np.arange(k, k + per_chunk, dtype=np.float64)
        times = times[times < end]
        if times.size == 0:
            return
        yield times
        k += per_chunk


class Generator:
    """One simulator run: build the network, stream rounds into Kafka, report."""

    def __init__(self, settings: Settings, config: RunConfig) -> None:
        self.settings = settings
        self.config = config
        self.stats = RunStats()
        self.stop = _StopFlag()
        network = build_network(
            np.random.default_rng([config.seed, 0]),
            stations_per_district=config.stations_per_district,
            legacy_fraction=config.rates.wrong_unit,
            coarse_fraction=config.coarse_fraction,
        )
        start = config.start.timestamp() if config.start else time.time()
        self.stream = ReadingStream(network, config.rates, config.seed, config.interval, start)
        self.network = network

    def run(self) -> RunStats:
        """Run until the bound is reached or SIGTERM/SIGINT; always flushes."""
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        producer = _make_producer(self.settings, self.config, self.stats)
        labels = (
            self.config.labels_path.open("w", encoding="utf-8") if self.config.labels_path else None
        )
        try:
            partitions = check_broker(producer, self.settings, self.config.topic, timeout=10.0)
            self._announce(partitions)
            started = time.monotonic()
            self._last_progress = started
            self._started = started
            rounds = self._live() if self.config.mode == "live" else self._backfill()
            for batch in rounds:
                self._emit(producer, batch, labels)
                if self.stop.stopped or self._bound_reached(started):
                    break
            self._emit(producer, self.stream.drain(), labels)
            self.stats.unflushed = producer.flush(60.0)
            self.stats.elapsed = time.monotonic() - started
        finally:
            if labels is not None:
                labels.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.stats

    def _announce(self, partitions: int) -> None:
        config = self.config
        sensors = self.network.size
        if config.mode == "live":
            pace = f"every {config.interval:g}s (~{sensors / config.interval:,.0f} readings/s)"
        else:
            start = config.start.isoformat() if config.start else "?"
            end = config.end.isoformat() if config.end else "open"
            pace = f"event times {start} .. {end}, step {config.interval:g}s, as fast as possible"
        bound = f", stop after {config.count:,} readings" if config.count else ""
        if config.mode == "live" and config.duration:
            bound += f", stop after {config.duration:g}s"
        log.info(
            "%s: %d sensors at %d stations, %s%s; topic %s (%d partitions), seed %d",
            config.mode,
            sensors,
            sensors // 7,
            pace,
            bound,
            config.topic,
            partitions,
            config.seed,
            extra={"fields": {"mode": config.mode, "topic": config.topic}},
        )

    def _bound_reached(self, started: float) -> bool:
        config = self.config
        if config.count is not None and self.stats.readings >= config.count:
            return True
        return (
            config.mode == "live"
            and config.duration is not None
            and time.monotonic() - started >= config.duration
        )

    def _backfill(self) -> Iterator[Round]:
        now = time.time()
        for times in _round_times(self.config, self.network.size):
            yield from self.stream.rounds(times, now)

    def _live(self) -> Iterator[Round]:
        interval = self.config.interval
        first = time.time()
        last_due = first + self.config.duration if self.config.duration else float("inf")
        k = 0
        while not self.stop.stopped:
            due = first + k * interval
            if due >= last_due:
                return
            while not self.stop.stopped and (wait := due - time.time()) > 0:
                time.sleep(min(wait, 0.2))
            if self.stop.stopped:
                return
            yield from self.stream.rounds(np.array([due]), time.time())
            k += 1

    def _emit(self, producer: Producer, batch: Round, labels: TextIO | None) -> None:
        topic = self.config.topic
        produce = producer.produce
        for key, value in zip(batch.keys, batch.values, strict=True):
            try:
                produce(topic, value, key)
            except BufferError:
                # Local queue full: let librdkafka deliver, then retry (backpressure).
                while True:
                    self.stats.backpressure_waits += 1
                    producer.poll(0.05)
                    try:
                        produce(topic, value, key)
                        break
                    except BufferError:
                        continue
        producer.poll(0)
        self.stats.sent += len(batch.values)
        self.stats.sent_bytes += sum(map(len, batch.values))
        self.stats.readings = self.stream.counts["readings"]
        self.stats.faulty += len(batch.labels)
        if labels is not None and batch.labels:
            labels.write("".join(json.dumps(lbl.to_json()) + "\n" for lbl in batch.labels))
        self._beat()
        self._progress(producer)

    def _progress(self, producer: Producer) -> None:
        every = self.config.progress_every
        now = time.monotonic()
        if every <= 0 or now - self._last_progress < every:
            return
        self._last_progress = now
        elapsed = now - self._started
        log.info(
            "sent %s (%s/s), failed %d, queued %s, held back %d, faulty %s",
            f"{self.stats.sent:,}",
            f"{self.stats.sent / elapsed:,.0f}",
            self.stats.failed,
            f"{len(producer):,}",
            self.stream.pending,
            f"{self.stats.faulty:,}",
            extra={"fields": {"sent": self.stats.sent, "failed": self.stats.failed}},
        )

    def _beat(self) -> None:
        """Touch the heartbeat file (the container's liveness signal), if configured."""
        path = self.settings.data_generator_heartbeat_file
        if path is None:
            return
        try:
            path.touch()
        except OSError as exc:
            log.warning("cannot touch heartbeat file %s: %s", path, exc)
