"""Turn the model into Kafka messages, round by round, injecting and labelling faults.

A round is one reading from every sensor that is not in an outage. Clean readings take a fast
path (a per-sensor JSON prefix plus the varying fields); the few faulty ones are built as
dicts and mutated. Delayed events (out-of-order, late, duplicates) wait in a heap keyed by the
round at which they are released.

`ReadingStream` is one class of ~300 lines on purpose: the round loop, the fast path and the
fault mutations share per-sensor arrays in the simulator's hot loop (`make bench` measures
it), and each method is small; the model it draws from lives in `network`, `signals` and
`faults`.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from iot_pipeline.generator.faults import READING_FAULTS, FaultLabel, FaultRates
from iot_pipeline.generator.network import (
    METRIC_NAMES,
    METRIC_SCALE,
    WHOLE_FAHRENHEIT,
    WHOLE_UNITS,
    Network,
)
from iot_pipeline.generator.signals import (
    battery_levels,
    expected_values,
    noisy_values,
    unit_hash,
)
from iot_pipeline.schema import METRICS, SCHEMA_VERSION, format_event_time

# A stuck sensor holds the value it had when it froze for a 6-hour block (UTC-aligned), or
# for STUCK_READINGS of its readings when it samples more sparsely (a 3-hourly sensor frozen
# for a day): a frozen instrument stays frozen until someone comes by.
STUCK_SPAN = 6 * 3600.0
STUCK_READINGS = 8


def stuck_span(interval: float) -> float:
    """How long a sensor sampled every `interval` seconds stays frozen."""
    return max(STUCK_SPAN, STUCK_READINGS * interval)


def _coarsened(values: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """Values as coarse sensors write them: whole units, or whole degF written in degC with
    one decimal (network.WHOLE_UNITS, WHOLE_FAHRENHEIT)."""
    whole = np.round(values)
    fahrenheit = np.round((np.round(values * 1.8 + 32.0) - 32.0) / 1.8, 1)
    out = np.where(coarse[None, :] == WHOLE_UNITS, whole, values)
    return np.where(coarse[None, :] == WHOLE_FAHRENHEIT, fahrenheit, out)


_NO_FAULT = len(READING_FAULTS)
_FAULT_INDEX = {kind: i for i, kind in enumerate(READING_FAULTS)}
_CO = METRIC_NAMES.index("co")
_TEMPERATURE = METRIC_NAMES.index("temperature")
_HUMIDITY = METRIC_NAMES.index("humidity")
_VALUE_REPLACING = {"impossible_value", "spike", "wrong_type"}
_REQUIRED_FIELDS = (
    "schema_version",
    "event_id",
    "sensor_id",
    "metric",
    "value",
    "unit",
    "event_time",
    "seq",
)


@dataclass
class Round:
    """The messages of one round, in emission order, and the labels of the faulty ones."""

    keys: list[bytes] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    labels: list[FaultLabel] = field(default_factory=list)


def _iso(epoch: float) -> str:
    return format_event_time(datetime.fromtimestamp(epoch, UTC))


class ReadingStream:
    """A reproducible stream of sensor readings: same seed and start, same bytes."""

    def __init__(
        self,
        network: Network,
        rates: FaultRates,
        seed: int,
        interval: float,
        start_time: float,
    ) -> None:
        self.network = network
        self.rates = rates
        self.interval = interval
        self.rng = np.random.default_rng([seed, 1])
        self.py_rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        self.tag = hashlib.blake2b(f"{seed}:{start_time}".encode(), digest_size=4).hexdigest()
        self.seq = np.zeros(network.size, dtype=np.int64)
        self.round_index = 0
        self.counts: Counter[str] = Counter()
        self._delayed: list[tuple[int, int, bytes, bytes]] = []
        self._delay_counter = 0
        self._thresholds = np.cumsum([getattr(rates, kind) for kind in READING_FAULTS])
        self._keys = [sensor.encode() for sensor in network.sensor_id]
        self._decimals = np.where(network.metric_index == _CO, 3, 2)
        self._legacy = network.legacy_fahrenheit
        self._prefixes = [self._prefix(i) for i in range(network.size)]

    # -- building messages ------------------------------------------------------------------

    def _prefix(self, i: int) -> str:
        net = self.network
        static = json.dumps(
            {
                "schema_version": SCHEMA_VERSION,
                "sensor_id": net.sensor_id[i],
                "station_id": net.station_id[i],
                "district": net.district[i],
                "metric": net.metric[i],
                "unit": net.unit[i],
                "lat": float(net.lat[i]),
                "lon": float(net.lon[i]),
                "firmware": net.firmware[i],
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return f'{static[:-1]},"event_id":"{self.tag}-{i:x}-'

    def _record(self, i: int, seq: int, ts: str, value: float, battery: float) -> dict[str, object]:
        net = self.network
        return {
            "schema_version": SCHEMA_VERSION,
            "event_id": f"{self.tag}-{i:x}-{seq:x}",
            "sensor_id": net.sensor_id[i],
            "station_id": net.station_id[i],
            "district": net.district[i],
            "metric": net.metric[i],
            "value": value,
            "unit": net.unit[i],
            "event_time": ts,
            "seq": seq,
            "lat": float(net.lat[i]),
            "lon": float(net.lon[i]),
            "battery_pct": battery,
            "firmware": net.firmware[i],
        }

    @staticmethod
    def _dumps(record: dict[str, object]) -> str:
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"))

    def _in_sensor_unit(self, i: int, celsius_or_native: float) -> float:
        return celsius_or_native * 1.8 + 32.0 if self._legacy[i] else celsius_or_native

    def _impossible(self, i: int) -> float:
        metric = int(self.network.metric_index[i])
        r = self.py_rng
        if metric == _TEMPERATURE:
            value = r.choice([r.uniform(-140.0, -95.0), r.uniform(70.0, 200.0)])
            return round(self._in_sensor_unit(i, value), 2)
        if metric == _HUMIDITY:
            # beyond the tolerance of a saturated sensor (schema.METRICS): surely broken
            return round(r.choice([r.uniform(110.0, 250.0), r.uniform(-60.0, -10.0)]), 2)
        maximum = METRICS[METRIC_NAMES[metric]].maximum
        return round(r.choice([-r.uniform(1.0, 50.0), maximum * r.uniform(1.5, 4.0)]), 3)

    def _spike(self, i: int, value: float) -> float:
        metric = int(self.network.metric_index[i])
        r = self.py_rng
        scale = float(METRIC_SCALE[metric])
        if metric == _TEMPERATURE:
            delta = r.choice([-1.0, 1.0]) * r.uniform(10.0, 16.0)
            return round(value + (delta * 1.8 if self._legacy[i] else delta), 2)
        if metric == _HUMIDITY:
            return round(max(1.0, value - r.uniform(35.0, 50.0)), 2)
        return round(value + r.uniform(6.0, 12.0) * scale, 3)

    def _mutate(self, kind: str, record: dict[str, object], text: str) -> str | bytes:
        r = self.py_rng
        if kind == "malformed_json":
            variant = r.randrange(4)
            if variant == 0:
                return text[: r.randrange(5, len(text) - 1)]
            if variant == 1:
                return text.replace(":", "=", 1)
            if variant == 2:
                return text[:-1] + ",}"
            return b"\xff\xfe" + text.encode()
        if kind == "missing_field":
            del record[r.choice(_REQUIRED_FIELDS)]
        elif kind == "extra_field":
            record[r.choice(["note", "debug", "gateway_rssi"])] = r.choice(["recal", 1, -71.5])
        elif kind == "wrong_type":
            variant = r.randrange(4)
            if variant == 0:
                record["value"] = str(record["value"])
            elif variant == 1:
                record["value"] = None
            elif variant == 2:
                record["seq"] = str(record["seq"])
            else:
                record["event_time"] = 1_700_000_000
        return self._dumps(record)

    # -- rounds -------------------------------------------------------------------------------

    def rounds(self, times: np.ndarray, now: float) -> Iterator[Round]:
        """One Round per time, in order. `now` is the wall clock (for clock-skewed events)."""
        times = np.asarray(times, dtype=np.float64)
        net = self.network
        values, _expected = noisy_values(net, times, self.rng)
        hours = np.floor(times / 3600.0)
        outage = unit_hash(hours, net.phase_a) < self.rates.outage
        span = stuck_span(self.interval)
        blocks = np.floor(times / span)
        stuck = (unit_hash(blocks, net.phase_b) < self.rates.stuck) & ~outage
        if stuck.any():
            frozen = expected_values(net, blocks * span)
            values = np.where(stuck, frozen, values)
        values[:, self._legacy] = values[:, self._legacy] * 1.8 + 32.0
        values = np.where(self._decimals == 3, np.round(values, 3), np.round(values, 2))
        if net.coarse.any():
            values = _coarsened(values, net.coarse)
        battery = np.round(battery_levels(net, times), 1)
        draws = self.rng.random(values.shape)
        kinds = np.searchsorted(self._thresholds, draws, side="right")
        special_mask = (kinds < _NO_FAULT) | stuck | self._legacy[None, :]

        for r in range(len(times)):
            yield self._round(
                times[r],
                now,
                outage[r],
                values[r],
                battery[r],
                kinds[r],
                stuck[r],
                special_mask[r],
            )

    def _round(
        self,
        when: float,
        now: float,
        outage: np.ndarray,
        values: np.ndarray,
        battery: np.ndarray,
        kinds: np.ndarray,
        stuck: np.ndarray,
        special: np.ndarray,
    ) -> Round:
        active = np.flatnonzero(~outage)
        seqs = self.seq[active]
        self.seq[active] += 1
        ts = _iso(when)
        prefixes = self._prefixes
        sensors = active.tolist()
        seq_list = seqs.tolist()
        texts: list[str | bytes] = [
            f'{prefixes[i]}{q:x}","seq":{q},"event_time":"{ts}","value":{v},"battery_pct":{b}}}'
            for i, q, v, b in zip(
                sensors, seq_list, values[active].tolist(), battery[active].tolist(), strict=True
            )
        ]
        out = Round()
        self.counts["outage"] += len(outage) - len(active)
        held: set[int] = set()
        for pos in np.flatnonzero(special[active]).tolist():
            held |= self._special(
                out,
                pos,
                sensors[pos],
                seq_list[pos],
                ts,
                when,
                now,
                float(values[sensors[pos]]),
                float(battery[sensors[pos]]),
                int(kinds[sensors[pos]]),
                bool(stuck[sensors[pos]]),
                texts,
            )
        keys = self._keys
        for pos, (i, text) in enumerate(zip(sensors, texts, strict=True)):
            if pos in held:
                continue
            out.keys.append(keys[i])
            out.values.append(text.encode() if isinstance(text, str) else text)
        self.counts["readings"] += len(sensors)
        self._release(out, self.round_index)
        self.round_index += 1
        return out

    def _special(
        self,
        out: Round,
        pos: int,
        i: int,
        seq: int,
        ts: str,
        when: float,
        now: float,
        value: float,
        battery: float,
        kind_index: int,
        stuck: bool,
        texts: list[str | bytes],
    ) -> set[int]:
        """Apply this reading's faults; returns {pos} when its emission is delayed."""
        faults: list[str] = []
        if self._legacy[i]:
            faults.append("wrong_unit")
        kind = READING_FAULTS[kind_index] if kind_index < _NO_FAULT else None
        # a stuck reading whose value another fault replaced no longer shows the stuck value
        if stuck and kind not in _VALUE_REPLACING:
            faults.append("stuck")
        event_id = f"{self.tag}-{i:x}-{seq:x}"
        held: set[int] = set()
        if kind is not None:
            self.counts[kind] += 1
            if kind in ("malformed_json", "missing_field", "extra_field", "wrong_type"):
                record = self._record(i, seq, ts, value, battery)
                texts[pos] = self._mutate(kind, record, self._dumps(record))
            elif kind in ("impossible_value", "spike", "clock_skew"):
                record = self._record(i, seq, ts, value, battery)
                if kind == "impossible_value":
                    record["value"] = self._impossible(i)
                elif kind == "spike":
                    record["value"] = self._spike(i, value)
                else:
                    record["event_time"] = _iso(
                        max(when, now) + self.py_rng.uniform(600.0, 6 * 3600.0)
                    )
                texts[pos] = self._dumps(record)
            elif kind in ("out_of_order", "late"):
                low, high = (5.0, 120.0) if kind == "out_of_order" else (3600.0, 6 * 3600.0)
                self._hold(i, texts[pos], self.py_rng.uniform(low, high))
                held.add(pos)
            # duplicate: the original goes out now, its copy a little later (below)
        for fault in faults:
            self.counts[fault] += 1
        payload = texts[pos]
        data = payload.encode() if isinstance(payload, str) else payload
        digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        base_faults = tuple(faults)
        if kind == "duplicate":
            if base_faults:
                out.labels.append(
                    FaultLabel(event_id, self.network.sensor_id[i], base_faults, digest)
                )
            self._hold(i, payload, self.py_rng.uniform(0.0, 3.0 * self.interval))
            out.labels.append(
                FaultLabel(event_id, self.network.sensor_id[i], (*base_faults, "duplicate"), digest)
            )
        elif kind is not None or base_faults:
            all_faults = (*base_faults, kind) if kind is not None else base_faults
            out.labels.append(FaultLabel(event_id, self.network.sensor_id[i], all_faults, digest))
        return held

    def _hold(self, i: int, payload: str | bytes, delay_seconds: float) -> None:
        release = self.round_index + max(1, int(np.ceil(delay_seconds / self.interval)))
        data = payload.encode() if isinstance(payload, str) else payload
        self._delay_counter += 1
        heapq.heappush(self._delayed, (release, self._delay_counter, self._keys[i], data))

    def _release(self, out: Round, upto: int) -> None:
        while self._delayed and self._delayed[0][0] <= upto:
            _, _, key, data = heapq.heappop(self._delayed)
            out.keys.append(key)
            out.values.append(data)

    def drain(self) -> Round:
        """Everything still held back (at the end of a bounded run or on shutdown)."""
        out = Round()
        self._release(out, 2**62)
        return out

    @property
    def pending(self) -> int:
        """Messages held back for later release."""
        return len(self._delayed)
