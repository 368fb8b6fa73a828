"""What the ETL remembers between runs, in Redis: commit times, range failures, quarantines.

Written by the orchestrator (plan, commit, quarantine, run outcome) and read by everything
that reports health (`make status`, the API's `/pipeline/status`, `/health/pipeline`,
`/metrics`). Keys live under `<prefix>:pipeline:` so a test's own pipeline has its own.

- `commits` (hash): `<topic>:<partition>` -> JSON {offset, at}; `at` is epoch seconds of the
  last commit, or of the first plan that saw the partition (a baseline, so a partition that
  never committed still ages).
- `range-failures` (hash): `<topic>:<partition>:<start>` -> JSON {count, error, at, since}:
  failed attempts of the range starting there (`at` the latest, `since` the first); cleared
  when the partition moves past it.
- `failed-runs` (string): consecutive runs with a failed or quarantined range; 0 after a clean run.
- `lost` (hash): `<topic>:<partition>:<from>` -> JSON {to, count, at}: records Kafka's
  retention deleted before the group processed them (its offset `from` below the log start
  `to`), noted once per gap however often a plan sees it.
- `topic-recreations` (counter): topics found deleted and created again (topic_identity).
- `refusal` (string): JSON {error, ranges, at, since} while the search engine refuses the
  writes of the last run for a reason of its own (a block, a privilege, a missing index);
  deleted by the first run it refuses nothing.
- `quarantine` (list, newest first, bounded) and `quarantined-ranges` /
  `quarantined-records` (counters).
- `quarantine-pending` (hash): range -> the quarantine entry, until a clean run replayed it
  (etl.replay_quarantined).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from iot_pipeline.contracts.ranges import OffsetRange

QUARANTINE_KEPT = 200  # entries of the quarantine log kept in Redis


def _key(prefix: str, name: str) -> str:
    return f"{prefix}:pipeline:{name}"


def _partition_field(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def _range_field(offsets: OffsetRange) -> str:
    return f"{offsets.topic}:{offsets.partition}:{offsets.start}"


@dataclass(frozen=True)
class Quarantine:
    """A range set aside after failing `attempts` times: its records are dead letters now."""

    range: str
    topic: str
    partition: int
    start: int
    end: int
    records: int
    attempts: int
    error: str
    batch_id: str
    at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def offsets(self) -> OffsetRange:
        return OffsetRange(
            topic=self.topic, partition=self.partition, start=self.start, end=self.end
        )


@dataclass(frozen=True)
class RangeFailure:
    """Failed attempts so far of the range that starts at an offset."""

    count: int
    error: str
    at: float  # the latest failed attempt
    since: float | None = None  # the first one (None in entries written before it was kept)


@dataclass(frozen=True)
class Refusal:
    """The search engine refused the last run's writes for a reason of its own."""

    error: str  # the first refusal's message (status, error type, reason, index)
    ranges: list[str]
    at: float  # the latest run it refused
    since: float  # the first run of this episode


@dataclass(frozen=True)
class SettleFailure:
    """The settle across partitions (district windows, buddy check) has failed since `since`:
    its work waits, kept in Redis, for the next settle that gets through."""

    error: str  # the latest failure's message
    at: float  # the latest run whose settle failed
    since: float  # the first one of this episode


@dataclass(frozen=True)
class RunState:
    """Everything health reports need, read at once."""

    last_commit: dict[int, float] = field(default_factory=dict)  # partition -> epoch seconds
    committed_offset: dict[int, int] = field(default_factory=dict)
    failing: dict[str, RangeFailure] = field(default_factory=dict)  # "<topic>:<p>:<start>"
    consecutive_failed_runs: int = 0
    quarantined_ranges: int = 0
    quarantined_records: int = 0
    quarantines: list[Quarantine] = field(default_factory=list)  # newest first
    refusal: Refusal | None = None
    lost_records: int = 0  # deleted by Kafka retention before they were processed
    topic_recreations: int = 0
    settle_failure: SettleFailure | None = None
    across_waiting: int = 0  # district windows and buddy slots waiting for a settle


def note_planned(client: redis.Redis, prefix: str, ranges: list[OffsetRange], at: float) -> None:
    """Start the commit clock of partitions seen for the first time (never overwrites)."""
    if not ranges:
        return
    pipe = client.pipeline(transaction=False)
    for r in ranges:
        baseline = json.dumps({"offset": r.start, "at": at})
        pipe.hsetnx(_key(prefix, "commits"), _partition_field(r.topic, r.partition), baseline)
    pipe.execute()


def note_committed(client: redis.Redis, prefix: str, ranges: list[OffsetRange], at: float) -> None:
    """The ranges' partitions committed now: their clocks restart, their failures are over."""
    if not ranges:
        return
    failing = [
        f.decode() if isinstance(f, bytes) else str(f)
        for f in client.hkeys(_key(prefix, "range-failures"))
    ]
    pipe = client.pipeline(transaction=False)
    for r in ranges:
        value = json.dumps({"offset": r.end, "at": at})
        pipe.hset(_key(prefix, "commits"), _partition_field(r.topic, r.partition), value)
        for name in failing:
            owner, _, start = name.rpartition(":")
            if owner == _partition_field(r.topic, r.partition) and int(start) < r.end:
                pipe.hdel(_key(prefix, "range-failures"), name)
    pipe.execute()


def note_range_failed(
    client: redis.Redis, prefix: str, offsets: OffsetRange, error: str, at: float
) -> int:
    """Count one more failed attempt of the range (by its start); returns the count."""
    key, name = _key(prefix, "range-failures"), _range_field(offsets)
    raw = client.hget(key, name)
    previous = json.loads(raw) if raw else {}
    count = 1 + int(previous.get("count", 0))
    since = previous.get("since", previous.get("at", at))
    value = {"count": count, "error": error[:500], "at": at, "since": since}
    client.hset(key, name, json.dumps(value))
    return count


def note_quarantined(client: redis.Redis, prefix: str, entry: Quarantine) -> None:
    """Log a quarantine (bounded list) and count it."""
    pipe = client.pipeline(transaction=True)
    pipe.lpush(_key(prefix, "quarantine"), json.dumps(entry.as_dict()))
    pipe.ltrim(_key(prefix, "quarantine"), 0, QUARANTINE_KEPT - 1)
    pipe.incr(_key(prefix, "quarantined-ranges"))
    pipe.incrby(_key(prefix, "quarantined-records"), entry.records)
    pipe.hset(_key(prefix, "quarantine-pending"), entry.range, json.dumps(entry.as_dict()))
    pipe.execute()


def pending_quarantines(client: redis.Redis, prefix: str, limit: int) -> list[Quarantine]:
    """Quarantined ranges not replayed yet, the oldest first, at most `limit`."""
    raw = client.hvals(_key(prefix, "quarantine-pending"))
    entries = sorted((Quarantine(**json.loads(v)) for v in raw), key=lambda q: q.at)
    return entries[:limit]


def note_replayed(client: redis.Redis, prefix: str, ranges: list[str]) -> None:
    """These quarantined ranges were replayed: no longer pending."""
    if ranges:
        client.hdel(_key(prefix, "quarantine-pending"), *ranges)


def note_lost(client: redis.Redis, prefix: str, topic: str, found: list[Any], at: float) -> int:
    """Note each partition position (offsets.PartitionPosition) whose records Kafka deleted
    before they were processed, once per gap; returns the records newly noted."""
    gaps = [p for p in found if p.lost > 0]
    if not gaps:
        return 0
    pipe = client.pipeline(transaction=False)
    for p in gaps:
        value = json.dumps({"to": p.low, "count": p.lost, "at": at})
        pipe.hsetnx(_key(prefix, "lost"), f"{topic}:{p.partition}:{p.lost_from}", value)
    added = pipe.execute()
    return sum(p.lost for p, new in zip(gaps, added, strict=True) if new)


def note_refusal(client: redis.Redis, prefix: str, refused: list[Any], at: float) -> None:
    """Record the ranges (batches.RangeFailure) the engine refused in this run, or end the
    episode when it refused none."""
    latest = None
    if refused:
        latest = {"error": refused[0].error[:1000], "ranges": [str(f.range) for f in refused]}
    _note_episode(client, _key(prefix, "refusal"), latest, at)


def _note_episode(client: redis.Redis, key: str, latest: dict[str, Any] | None, at: float) -> None:
    """Record the latest run of an episode (its fields, `at`, and the `since` of its first
    run), or end the episode (`latest` None)."""
    if latest is None:
        client.delete(key)
        return
    raw = client.get(key)
    since = float(json.loads(raw)["since"]) if raw else at
    client.set(key, json.dumps({**latest, "at": at, "since": since}))


ACROSS_KINDS = ("district-windows", "buddy-slots")


def pending_key(prefix: str, kind: str, taken: bool = False) -> str:
    """The Redis set of work across partitions of one kind (ACROSS_KINDS) that ranges left
    for the run's settle; `taken`: what a settle took and has not finished."""
    return f"{prefix}:pending:{kind}" + (":taken" if taken else "")


def note_settle(client: redis.Redis, prefix: str, error: str | None, at: float) -> None:
    """Record a run's failed settle (an episode starts at the first), or end the episode."""
    latest = None if error is None else {"error": error[:1000]}
    _note_episode(client, _key(prefix, "settle-failure"), latest, at)


def note_run(client: redis.Redis, prefix: str, clean: bool) -> int:
    """Count consecutive unclean runs; returns the count after this run."""
    key = _key(prefix, "failed-runs")
    if clean:
        client.set(key, 0)
        return 0
    return int(client.incr(key))


def _int(raw: Any) -> int:
    return int(raw) if raw is not None else 0


def _gap_topic(name: Any) -> str:
    """The topic of a `lost` field, `<topic>:<partition>:<from>`."""
    text = name.decode() if isinstance(name, bytes) else str(name)
    return text.rsplit(":", 2)[0]


def parse_state(
    commits: dict[Any, Any],
    failures: dict[Any, Any],
    failed_runs: Any,
    ranges: Any,
    records: Any,
    quarantine: list[Any],
    topic: str,
    refusal: Any = None,
    lost: dict[Any, Any] | None = None,
    recreations: Any = None,
    settle_failure: Any = None,
    waiting: list[Any] | None = None,
) -> RunState:
    """The state from the raw Redis answers (shared by the sync and async readers)."""
    last_commit: dict[int, float] = {}
    committed: dict[int, int] = {}
    for name, raw in commits.items():
        name = name.decode() if isinstance(name, bytes) else str(name)
        owner, _, partition = name.rpartition(":")
        if owner != topic:
            continue
        value = json.loads(raw)
        last_commit[int(partition)] = float(value["at"])
        committed[int(partition)] = int(value["offset"])
    failing = {}
    for name, raw in failures.items():
        name = name.decode() if isinstance(name, bytes) else str(name)
        value = json.loads(raw)
        since = value.get("since")
        failing[name] = RangeFailure(
            int(value["count"]),
            str(value["error"]),
            float(value["at"]),
            None if since is None else float(since),
        )
    return RunState(
        last_commit=last_commit,
        committed_offset=committed,
        failing=failing,
        consecutive_failed_runs=_int(failed_runs),
        quarantined_ranges=_int(ranges),
        quarantined_records=_int(records),
        quarantines=[Quarantine(**json.loads(raw)) for raw in quarantine],
        refusal=Refusal(**json.loads(refusal)) if refusal else None,
        settle_failure=SettleFailure(**json.loads(settle_failure)) if settle_failure else None,
        across_waiting=sum(_int(n) for n in waiting or []),
        lost_records=sum(
            int(json.loads(raw)["count"])
            for name, raw in (lost or {}).items()
            if (name.decode() if isinstance(name, bytes) else str(name))
            .rpartition(":")[0]
            .rpartition(":")[0]
            == topic
        ),
        topic_recreations=_int(recreations),
    )


def state_commands(pipe: Any, prefix: str, recent: int) -> None:
    """Queue the reads of `read_state` on a (sync or async) Redis pipeline."""
    pipe.hgetall(_key(prefix, "commits"))
    pipe.hgetall(_key(prefix, "range-failures"))
    pipe.get(_key(prefix, "failed-runs"))
    pipe.get(_key(prefix, "quarantined-ranges"))
    pipe.get(_key(prefix, "quarantined-records"))
    pipe.lrange(_key(prefix, "quarantine"), 0, recent - 1)
    pipe.get(_key(prefix, "refusal"))
    pipe.hgetall(_key(prefix, "lost"))
    pipe.get(_key(prefix, "topic-recreations"))
    pipe.get(_key(prefix, "settle-failure"))
    for kind in ACROSS_KINDS:
        for taken in (False, True):
            pipe.scard(pending_key(prefix, kind, taken))


def read_state(client: redis.Redis, prefix: str, topic: str, recent: int = 20) -> RunState:
    """Everything above, for the sensor topic `topic`, with the `recent` newest quarantines."""
    pipe = client.pipeline(transaction=False)
    state_commands(pipe, prefix, recent)
    answers = pipe.execute()
    return parse_answers(answers, topic)


def parse_answers(answers: list[Any], topic: str) -> RunState:
    """The state from the answers to `state_commands`, in their order."""
    commits, failures, failed_runs, ranges, records, quarantine, refusal, lost, made = answers[:9]
    settle, *waiting = answers[9:]
    return parse_state(
        commits,
        failures,
        failed_runs,
        ranges,
        records,
        quarantine,
        topic,
        refusal=refusal,
        lost=lost,
        recreations=made,
        settle_failure=settle,
        waiting=waiting,
    )


@dataclass(frozen=True)
class PartitionHealth:
    """One partition as a stall detector sees it."""

    partition: int
    lag: int
    last_commit_age: float | None  # seconds; None when never seen
    stalled: bool


def settle_stalled(state: RunState, stall_after: float, now: float | None = None) -> bool:
    """The settles across partitions have failed for longer than `stall_after`: district
    windows and buddy verdicts lag behind the stored readings."""
    now = time.time() if now is None else now
    failure = state.settle_failure
    return failure is not None and now - failure.since > stall_after


def partition_health(
    state: RunState, lags: dict[int, int], stall_after: float, now: float | None = None
) -> list[PartitionHealth]:
    """A partition is stalled when it has lag and its last commit is older than `stall_after`."""
    now = time.time() if now is None else now
    result = []
    for partition, lag in sorted(lags.items()):
        at = state.last_commit.get(partition)
        age = None if at is None else max(0.0, now - at)
        stalled = lag > 0 and age is not None and age > stall_after
        result.append(PartitionHealth(partition, lag, age, stalled))
    return result
