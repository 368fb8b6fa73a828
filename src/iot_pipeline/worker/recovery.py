"""A worker that starts takes back the tasks a dead worker was holding.

With late acknowledgement, a task message stays in the broker's "unacked" set until the
worker that received it finishes. If that worker is killed (SIGKILL, out of memory, a
container stop that timed out), the broker hands the message out again only after its
visibility timeout, so the range it names would wait that long. At start-up, each worker
therefore looks at the messages delivered before it booted and puts back in its queue every
one whose holder is gone:

- its task is not finished (a finished one is only dropped from the set: never run twice), and
- no other worker answers a ping (then every holder is dead), or the task was started by a
  worker that does not answer, or by an earlier run of this very node.

Messages a live worker holds are left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from celery import Celery, states
from kombu.utils.json import loads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Held:
    """An unacknowledged message: its delivery tag, task id and when it was delivered."""

    tag: str
    task_id: str
    delivered_at: float


def is_orphan(status: str, started_by: str | None, own_node: str, live_nodes: set[str]) -> bool:
    """Whether a message delivered before this worker booted must be handed out again;
    `live_nodes`: the other workers that answer a ping."""
    if status in states.READY_STATES:
        return False  # finished: its worker died after storing the result
    if not live_nodes:
        return True  # nobody else is alive: whoever held it is dead
    return started_by is not None and (started_by == own_node or started_by not in live_nodes)


def _held(client: Any, unacked_key: str, index_key: str, before: float) -> Iterable[Held]:
    for tag, score in client.zrange(index_key, 0, before, byscore=True, withscores=True):
        raw = client.hget(unacked_key, tag)
        if raw is None:
            continue
        message = loads(raw)[0]
        task_id = (message.get("headers") or {}).get("id") or ""
        yield Held(tag.decode() if isinstance(tag, bytes) else str(tag), task_id, score)


def take_back_orphans(app: Celery, own_node: str, booted_at: float) -> int:
    """Requeue the tasks dead workers held; returns how many. Never raises: a worker that
    cannot look (the broker is away) starts anyway and the visibility timeout remains."""
    try:
        live = {node for reply in app.control.ping(timeout=1.0) or [] for node in reply}
        live.discard(own_node)
        with app.connection_for_write() as connection:
            channel: Any = connection.default_channel
            qos = channel.qos
            client = channel.client
            taken = 0
            for held in list(
                _held(client, channel.unacked_key, channel.unacked_index_key, booted_at)
            ):
                meta = app.backend.get_task_meta(held.task_id) if held.task_id else {}
                status = str(meta.get("status", states.PENDING))
                result = meta.get("result")
                started_by = result.get("hostname") if isinstance(result, dict) else None
                if status in states.READY_STATES:
                    qos._remove_from_indices(held.tag).execute()
                    continue
                if not is_orphan(status, started_by, own_node, live):
                    continue
                qos.restore_by_tag(held.tag, client=client, leftmost=True)
                taken += 1
                log.warning(
                    "took back task %s (%s, delivered %.0fs ago) from a dead worker",
                    held.task_id,
                    status,
                    time.time() - held.delivered_at,
                    extra={"fields": {"task_id": held.task_id, "status": status}},
                )
            return taken
    except Exception as exc:  # the broker may be away: the visibility timeout still applies
        log.warning("could not look for tasks of dead workers: %s", exc)
        return 0
