"""Cleaner checkpoints in the real Redis: compare-and-set saves, the ring of older
checkpoints, and where a replay starts from."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from iot_pipeline.cleaning import SensorState
from iot_pipeline.cleaning.batch import DeadLetter, RawRecord
from iot_pipeline.contracts.ranges import OffsetRange
from iot_pipeline.processing import state_store
from iot_pipeline.processing.dead_letters import not_yet_sent, notes_lifetime, remember_sent
from iot_pipeline.processing.state_store import (
    load_replay_states,
    load_states,
    save_replay_states,
    save_states,
)
from iot_pipeline.settings import Settings

from support.waiting import eventually


@pytest.fixture
def client(test_settings: Settings) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(test_settings.redis_url)
    yield connection
    for key in connection.scan_iter("statetest:*"):
        connection.delete(key)
    connection.close()


def _range(start: int, end: int) -> OffsetRange:
    return OffsetRange(topic="t", partition=0, start=start, end=end)


def _state(watermark: float, seen: bool = True) -> dict[str, SensorState]:
    state = SensorState(watermark=watermark)
    if seen:
        state.remember(f"e{watermark}")
    return {"s": state}


def _ringed(watermark: float) -> dict[str, SensorState]:
    """A state as the ring keeps it: without the duplicate memory."""
    return _state(watermark, seen=False)


def _never() -> int:
    raise AssertionError("the log start is asked only when no checkpoint fits")


def test_saves_are_compare_and_set_and_a_range_finds_its_own_start(
    client: redis.Redis,
) -> None:
    assert save_states(client, "statetest", _range(0, 100), {}, _state(1))
    assert save_states(client, "statetest", _range(100, 200), _state(1), _state(2))
    # a late finisher of an older range cannot move the checkpoint back
    assert not save_states(client, "statetest", _range(0, 100), {}, _state(9))
    assert load_states(client, "statetest", _range(100, 200)) == _state(1)  # a retry
    assert load_states(client, "statetest", _range(200, 300)) == _state(2)
    assert load_states(client, "statetest", _range(250, 300)) == _state(2)  # a gap


def test_a_replay_starts_from_the_nearest_checkpoint_and_keeps_its_own(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_store, "RING_EVERY", 100)
    monkeypatch.setattr(state_store, "RING_SIZE", 3)
    for n in range(6):  # live ranges of 100: ring keeps the last three ends
        save_states(client, "statetest", _range(n * 100, n * 100 + 100), _state(n), _state(n + 1))
    ring = sorted(int(o) for o in client.hkeys("statetest:cleaner-ring:t:0"))
    assert ring == [400, 500, 600]
    live = client.get("statetest:cleaner-state:t:0")

    # from the ring (the nearest at or before the start), then warm up from there
    start = load_replay_states(client, "statetest", _range(450, 550), "r1", _never)
    assert (start.offset, start.states) == (400, _ringed(4))
    # the live key's own checkpoints count too
    start = load_replay_states(client, "statetest", _range(550, 650), "r1", _never)
    assert (start.offset, start.states) == (500, _state(5))
    # nothing that old is kept: empty state at the log start
    start = load_replay_states(client, "statetest", _range(150, 250), "r1", lambda: 0)
    assert (start.offset, start.states) == (0, {})

    # a replay's next range continues from the replay's own checkpoint, never the live one
    save_replay_states(client, "statetest", _range(150, 250), "r1", _state(42))
    start = load_replay_states(client, "statetest", _range(250, 350), "r1", _never)
    assert (start.offset, start.states) == (250, _state(42))
    assert client.get("statetest:cleaner-state:t:0") == live


def test_a_task_is_started_at_most_worker_max_deliveries_times(
    client: redis.Redis, test_settings: Settings
) -> None:
    from iot_pipeline.errors import RangeRedelivered
    from iot_pipeline.worker.tasks import _count_delivery

    settings = test_settings.model_copy(
        update={"search_index_prefix": "statetest", "worker_max_deliveries": 3}
    )
    for _ in range(3):  # the first start, then two redeliveries after a dead worker
        _count_delivery(client, settings, "range:b:t:0:0-10", 0)
    with pytest.raises(RangeRedelivered, match="started 4 times"):
        _count_delivery(client, settings, "range:b:t:0:0-10", 0)
    _count_delivery(client, settings, "range:b:t:0:0-10", 1)  # a Celery retry starts afresh


def test_a_range_lock_is_kept_alive_while_held_and_frees_itself_when_its_holder_dies(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iot_pipeline.worker import tasks

    monkeypatch.setattr(tasks, "LOCK_SECONDS", 2)
    name = "statetest:range-lock:t:0"
    with tasks.held_lock(client, name) as first:
        assert first
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # over two lifetimes: renewed, still ours
            with tasks.held_lock(client, name) as second:
                assert not second
            time.sleep(0.2)
    with tasks.held_lock(client, name) as again:  # released on exit
        assert again
    # a holder that dies without releasing: the lock expires by itself
    client.lock(name, timeout=1).acquire(blocking=False)
    eventually(lambda: not client.exists(name), 5, "the dead holder's lock expired", interval=0.1)


def _letter(offset: int) -> DeadLetter:
    record = RawRecord(value=b"{", topic="t", partition=0, offset=offset)
    return DeadLetter(record, "malformed_json", "parse", "bad")


def test_dead_letter_notes_expire_with_the_topics_retention(
    client: redis.Redis, test_settings: Settings
) -> None:
    """A note keeps a retried range from writing a letter twice; it lives as long as the
    dead-letter topic keeps letters (kafka/topics.json), so the notes stay bounded."""
    assert notes_lifetime(test_settings.kafka_topics_file) == 30 * 86400
    first = [_letter(1), _letter(2)]
    assert not_yet_sent(client, "statetest", first) == first
    remember_sent(client, "statetest", first, lifetime=3600)
    assert not_yet_sent(client, "statetest", [*first, _letter(3)]) == [_letter(3)]
    key = "statetest:dead-letter-notes:t:0"
    client.zadd(key, {"1": time.time() - 7200})  # noted two hours ago
    remember_sent(client, "statetest", [_letter(3)], lifetime=3600)
    assert sorted(client.zrange(key, 0, -1)) == [b"2", b"3"]  # the note on offset 1 expired


def test_notes_of_an_older_version_are_adopted(client: redis.Redis) -> None:
    client.sadd("statetest:dead-lettered:t:0", "5", "6")  # the set that never shrank
    assert not_yet_sent(client, "statetest", [_letter(5), _letter(7)]) == [_letter(7)]
    assert not client.exists("statetest:dead-lettered:t:0")
    assert client.zcard("statetest:dead-letter-notes:t:0") == 2
