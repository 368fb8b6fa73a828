"""Bulk indexing that loses nothing: bounded requests, per-item retries, rejects returned."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from iot_pipeline.errors import PermanentStoreError, StoreRefused, TransientStoreError
from iot_pipeline.storage.base import (
    IndexAction,
    ItemFailure,
    SearchStore,
    encoded_action,
)


@dataclass(frozen=True)
class BulkPolicy:
    """Bounds of one bulk request and the retry schedule of failed items."""

    max_docs: int = 2000
    max_bytes: int = 5 * 1024 * 1024
    max_attempts: int = 6
    base_delay: float = 0.2
    max_delay: float = 10.0


@dataclass
class IndexReport:
    """What `index_all` did: documents indexed, permanent rejections, retries made."""

    indexed: int = 0
    rejected: list[ItemFailure] = field(default_factory=list)
    retries: int = 0


def chunks(actions: list[IndexAction], policy: BulkPolicy) -> Iterator[list[IndexAction]]:
    """Split actions into requests bounded by document count and approximate size."""
    chunk: list[IndexAction] = []
    size = 0
    for action in actions:
        cost = len(encoded_action(action))
        if chunk and (len(chunk) >= policy.max_docs or size + cost > policy.max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(action)
        size += cost
    if chunk:
        yield chunk


def index_all(
    store: SearchStore,
    actions: list[IndexAction],
    policy: BulkPolicy = BulkPolicy(),
    refresh: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
) -> IndexReport:
    """Index every action; retry only items that failed with 429/5xx (backoff with jitter).

    Items the engine rejects for what they hold (mapping, parse errors) and conflicts are
    returned, never dropped; a refusal of the engine's own (see `systemic_refusal`) raises
    StoreRefused at once; items still failing after `max_attempts` raise
    TransientStoreError (retry the batch).
    """
    report = IndexReport()
    for request in chunks(actions, policy):
        pending = request
        attempt = 0
        while pending:
            outcome = store.bulk_index(pending, refresh=refresh)
            report.indexed += outcome.indexed
            refused = [f for f in outcome.failures if not f.retryable]
            systemic = systemic_refusal(refused, len(pending))
            if systemic is not None:
                raise StoreRefused(systemic)
            report.rejected += refused
            retry = [f for f in outcome.failures if f.retryable]
            if not retry:
                break
            attempt += 1
            if attempt >= policy.max_attempts:
                raise TransientStoreError(
                    f"{len(retry)} documents still failing after {attempt} attempts: "
                    f"{retry[0].status} {retry[0].reason}"
                )
            delay = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
            sleep(delay * (0.5 + jitter() / 2))
            report.retries += len(retry)
            pending = [f.action for f in retry]
    return report


# The breaker: when more than half of a bulk request (of at least this many documents) is
# refused with one error type, the cause is the engine's (a template gone, a mapping
# changed under the pipeline), even when the error type blames the document.
BREAKER_MIN_ITEMS = 10


def systemic_refusal(refused: list[ItemFailure], sent: int) -> str | None:
    """Why these refusals of a request of `sent` documents are the engine's, not the
    documents' (None when each may be a bad document: a dead letter)."""
    if not refused:
        return None
    engine = [f for f in refused if f.systemic]
    if engine:
        first = engine[0]
        return (
            f"{first.status} {first.error_type}: {first.reason[:300]} ({len(engine)} of "
            f"{sent} documents for {first.action.index} refused for a reason of the engine's "
            "own; nothing is dead-lettered, the range waits for the cause to be removed)"
        )
    kinds = Counter(f.error_type for f in refused if not f.conflict)
    if kinds:
        kind, count = kinds.most_common(1)[0]
        if count >= BREAKER_MIN_ITEMS and 2 * count > sent:
            first = next(f for f in refused if f.error_type == kind)
            return (
                f"{first.status} {kind}: {first.reason[:300]} ({count} of {sent} documents "
                f"for {first.action.index} refused with one error: more than half of a request "
                "is no bad record but a changed mapping or template; nothing is "
                "dead-lettered, the range waits for the cause to be removed)"
            )
    return None


def refuse_rejections(report: IndexReport, what: str) -> None:
    """For the pipeline's own updates, never malformed: a refusal is a bug or a template
    mismatch, and fails the work (PermanentStoreError) instead of passing unnoticed."""
    if report.rejected:
        first = report.rejected[0]
        raise PermanentStoreError(
            f"{len(report.rejected)} {what} refused, first {first.action.id}: "
            f"{first.status} {first.reason}"
        )
