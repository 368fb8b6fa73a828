"""What spans partitions, once per run rather than once per range: the district windows and
the buddy check.

A sensor lives on one partition, so its windows belong to the ranges of that partition. A
district's sensors and a buddy slot's stations are spread over every partition: when each
range recomputed them, the six ranges of a run recomputed the same district minutes and
re-judged the same slots six times over, and raced one another on the same documents.

A range of the ETL (`RangeTask.per_run`) therefore writes its sensors' windows itself and
leaves the rest as pending work in Redis, before its checkpoint: the district 1-minute
windows it touched (by its readings, or by the flags its rules changed) and the buddy slots
its readings fall into. Once the run's ranges are done, `settle` takes the pending work as one
snapshot and does it once: the buddy check over the slots (from the store, where every range
of the run has its readings searchable by then), then every touched district window and the
windows the buddy verdicts changed, recomputed from the store with their hours and days, in
groups side by side (a district's windows in one group).

The pending sets survive anything: a settle that fails leaves its snapshot in Redis, and the
next settle takes it together with what came since. Taking the snapshot is one atomic move,
so work a range adds meanwhile waits for the next settle instead of being lost. Settling
twice gives the same result as once: every step recomputes from the store.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import redis

from iot_pipeline.aggregation import recompute_windows
from iot_pipeline.aggregation.windows import Window
from iot_pipeline.contracts.run_state import ACROSS_KINDS, pending_key
from iot_pipeline.processing.buddy_check import slot_updates
from iot_pipeline.storage import BulkPolicy, SearchStore, index_all, refuse_rejections

log = logging.getLogger(__name__)

CHUNK = 5000  # members per Redis command
DISTRICT, SLOTS = ACROSS_KINDS


def _district_member(window: Window) -> str:
    return f"{window.metric}|{window.start}|{window.key}"


def _district_window(member: str) -> Window:
    metric, start, district = member.split("|", 2)
    return Window("district", district, metric, "1m", int(start))


def defer(
    client: redis.Redis,
    prefix: str,
    windows: Iterable[Window],
    slots: dict[str, set[int]],
) -> None:
    """Leave district 1-minute windows and buddy slots to the run's settle."""
    district = sorted(
        {_district_member(w) for w in windows if w.scope == "district" and w.resolution == "1m"}
    )
    buddy = sorted(f"{metric}|{slot}" for metric, found in slots.items() for slot in found)
    pipe = client.pipeline(transaction=False)
    for kind, members in ((DISTRICT, district), (SLOTS, buddy)):
        for start in range(0, len(members), CHUNK):
            pipe.sadd(pending_key(prefix, kind), *members[start : start + CHUNK])
    pipe.execute()


def pending(client: redis.Redis, prefix: str) -> int:
    """District windows waiting for a settle (taken by a settle that did not finish, or not)."""
    pipe = client.pipeline(transaction=False)
    for taken in (False, True):
        pipe.scard(pending_key(prefix, DISTRICT, taken))
    return sum(int(n) for n in pipe.execute())


# Move what is pending into the taken set (added to what an unfinished settle left there),
# atomically: a range adding work meanwhile adds it to a fresh pending set.
_TAKE = """
for i = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('SUNIONSTORE', KEYS[i + 1], KEYS[i + 1], KEYS[i])
    redis.call('DEL', KEYS[i])
  end
end
return 1
"""


def _taken(client: redis.Redis, key: str) -> list[str]:
    members: list[str] = []
    for member in client.sscan_iter(key, count=CHUNK):
        members.append(member.decode() if isinstance(member, bytes) else str(member))
    return members


@dataclass
class Settled:
    """What one settle did."""

    district_windows: int = 0  # district 1-minute windows recomputed (taken as pending)
    slots: int = 0  # buddy slots judged
    spatial_changes: int = 0  # readings whose spatial flag changed
    windows: int = 0  # window documents written (every resolution and scope)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _recompute(
    store: SearchStore,
    prefix: str,
    windows: set[Window],
    sample_interval: float,
    bulk: BulkPolicy,
    parallel: int,
) -> int:
    """Recompute these windows in up to `parallel` groups side by side, a key's windows in
    one group (the wait for the engine overlaps; a window is never in two groups). Returns
    the documents written; the first failure of a group is raised."""
    groups: list[set[Window]] = [set() for _ in range(max(1, parallel))]
    for window in windows:
        groups[zlib.crc32(window.key.encode()) % len(groups)].add(window)
    groups = [group for group in groups if group]
    if len(groups) <= 1:
        return recompute_windows(store, prefix, windows, sample_interval, bulk).written
    with ThreadPoolExecutor(len(groups), thread_name_prefix="settle") as pool:
        futures = [
            pool.submit(recompute_windows, store, prefix, group, sample_interval, bulk)
            for group in groups
        ]
        return sum(future.result().written for future in futures)


def settle(
    client: redis.Redis,
    store: SearchStore,
    prefix: str,
    sample_interval: float,
    bulk: BulkPolicy | None = None,
    parallel: int = 1,
) -> Settled:
    """Do the pending work across partitions: the buddy check over the pending slots, then
    the pending district windows and those the verdicts changed, in `parallel` groups at once
    (by district). Raises (leaving the work pending) when the store refuses."""
    started = time.monotonic()
    bulk = bulk or BulkPolicy()
    keys = [pending_key(prefix, DISTRICT), pending_key(prefix, DISTRICT, True)]
    keys += [pending_key(prefix, SLOTS), pending_key(prefix, SLOTS, True)]
    client.eval(_TAKE, len(keys), *keys)
    windows = {_district_window(m) for m in _taken(client, keys[1])}
    slots: dict[str, set[int]] = defaultdict(set)
    for member in _taken(client, keys[3]):
        metric, slot = member.split("|", 1)
        slots[metric].add(int(slot))
    done = Settled(district_windows=len(windows), slots=sum(len(s) for s in slots.values()))
    if slots:
        updates, moved = slot_updates(store, prefix, slots)
        if updates:
            outcome = index_all(store, updates, bulk, refresh=True)
            refuse_rejections(outcome, "spatial flag updates")
        done.spatial_changes = len(updates)
        windows |= moved
    if windows:
        done.windows = _recompute(store, prefix, windows, sample_interval, bulk, parallel)
    client.delete(keys[1], keys[3])
    done.seconds = round(time.monotonic() - started, 3)
    log.info("settled across partitions: %s", done.as_dict())
    return done
