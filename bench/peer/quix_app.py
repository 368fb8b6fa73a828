"""The peer of `make bench`: Quix Streams doing the core of the pipeline's job on the same
backlog, into the same search node.

Run by bench/bench_peer.py in the peer's own virtualenv (scripts/peer-venv.sh), as one member
of a consumer group; it imports nothing of the pipeline. Its job, smaller than the
pipeline's: parse and validate each record (the fields a reading needs, a finite value, an
event time), drop a sensor's duplicate event ids (state per sensor, in the processor's own
state store), index the readings, and keep 1-minute and 1-hour tumbling windows per sensor
(count, sum, min, max, mean) by event time, each indexed once when it closes. No rule across
readings, no district windows, no late-data revisions, no dead letters: a record that is
not JSON is skipped (counted).

It stops once no record came for `--idle` seconds, and prints one JSON line: records seen,
readings indexed, windows indexed, and the monotonic time its last record was processed.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import quixstreams.dataframe.windows.aggregations as agg
from quixstreams import Application
from quixstreams.sinks.base import BatchingSink, SinkBatch

REQUIRED = ("sensor_id", "event_id", "metric", "event_time")
BULK_DOCS = 2000


class SearchSink(BatchingSink):  # type: ignore[misc]
    """Documents into one index of the search node, by bulk requests, with their own ids."""

    def __init__(self, url: str, index: str, id_of: Any) -> None:
        super().__init__()
        self.url, self.index, self.id_of = url, index, id_of
        self.written = 0

    def write(self, batch: SinkBatch) -> None:
        lines: list[bytes] = []
        for item in batch:
            doc = item.value
            meta = {"index": {"_index": self.index, "_id": self.id_of(item.key, doc)}}
            lines.append(json.dumps(meta).encode())
            lines.append(json.dumps(doc).encode())
        for start in range(0, len(lines), 2 * BULK_DOCS):
            body = b"\n".join(lines[start : start + 2 * BULK_DOCS]) + b"\n"
            request = urllib.request.Request(  # noqa: S310 - loopback, from the bench
                f"{self.url}/_bulk",
                data=body,
                headers={"Content-Type": "application/x-ndjson"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
                if json.loads(response.read())["errors"]:
                    raise RuntimeError(f"the engine refused documents for {self.index}")
        self.written += len(lines) // 2


def _key(key: Any) -> str:
    return key.decode() if isinstance(key, bytes) else str(key)


def _event_ms(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
    """The record's own event time (windows are by event time), else the broker's time."""
    try:
        moment = datetime.fromisoformat(str(value["event_time"]).replace("Z", "+00:00"))
        return int(moment.timestamp() * 1000)
    except (KeyError, TypeError, ValueError):
        return int(timestamp)


def _validator(max_ahead: timedelta) -> Any:
    """Whether a record is a usable reading: the fields it needs, a finite number, an event
    time that is not too far ahead of the clock (as the pipeline's EVENT_TIME_MAX_AHEAD_HOURS:
    a record from the far future would close every window of its sensor)."""

    def valid(value: Any) -> bool:
        if not isinstance(value, dict) or any(not value.get(field) for field in REQUIRED):
            return False
        number = value.get("value")
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            return False
        if not math.isfinite(number):
            return False
        try:
            moment = datetime.fromisoformat(str(value["event_time"]).replace("Z", "+00:00"))
        except ValueError:
            return False
        if moment.tzinfo is None:
            return False
        return moment <= datetime.now(UTC) + max_ahead

    return valid


def _quiet(*_: Any) -> bool:
    """A record later than its closed window is dropped without a log line per record."""
    return False


def _first_time(value: dict[str, Any], state: Any) -> bool:
    """Whether this sensor's event id is new (the state is the sensor's: the message key)."""
    if state.get(value["event_id"]):
        return False
    state.set(value["event_id"], True)
    return True


def _window_doc(resolution: str) -> Any:
    def make(value: dict[str, Any], key: Any, timestamp: int, headers: Any) -> dict[str, Any]:
        return {
            "sensor_id": _key(key),
            "resolution": resolution,
            "window_start": value["start"],
            "window_end": value["end"],
            "count": value["count"],
            "sum": value["sum"],
            "min": value["min"],
            "max": value["max"],
            "mean": value["mean"],
        }

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--search-url", required=True)
    parser.add_argument("--index-prefix", required=True)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--max-ahead-hours", type=float, default=24.0)
    args = parser.parse_args()

    skipped = {"records": 0}

    def skip(exc: Exception, message: Any, logger: Any) -> bool:
        """A record that is no JSON object (the backlog holds hostile ones): skipped."""
        skipped["records"] += 1
        return True

    app = Application(
        on_consumer_error=skip,
        broker_address=args.brokers,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        loglevel="WARNING",
    )
    topic = app.topic(args.topic, value_deserializer="json", timestamp_extractor=_event_ms)
    last = {"at": time.monotonic(), "records": 0}

    def seen(value: Any) -> Any:
        last["at"] = time.monotonic()
        last["records"] += 1
        return value

    readings = SearchSink(
        args.search_url, f"{args.index_prefix}-readings", lambda key, doc: doc["event_id"]
    )
    window_sinks = {
        resolution: SearchSink(
            args.search_url,
            f"{args.index_prefix}-agg-{resolution}",
            lambda key, doc: f"{doc['sensor_id']}:{doc['window_start']}",
        )
        for resolution in ("1m", "1h")
    }
    sdf = (
        app.dataframe(topic).update(seen).filter(_validator(timedelta(hours=args.max_ahead_hours)))
    )
    sdf = sdf.filter(_first_time, stateful=True)
    sdf.sink(readings)
    for resolution, size in (("1m", timedelta(minutes=1)), ("1h", timedelta(hours=1))):
        windows = (
            sdf.tumbling_window(size, name=f"w{resolution}", on_late=_quiet)
            .agg(
                count=agg.Count(),
                sum=agg.Sum("value"),
                min=agg.Min("value"),
                max=agg.Max("value"),
                mean=agg.Mean("value"),
            )
            .final()
        )
        windows.apply(_window_doc(resolution), metadata=True).sink(window_sinks[resolution])
    app.run(timeout=args.idle)
    print(
        json.dumps(
            {
                "records": last["records"] + skipped["records"],
                "skipped": skipped["records"],
                "readings": readings.written,
                "windows": sum(s.written for s in window_sinks.values()),
                "last_at": last["at"],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
