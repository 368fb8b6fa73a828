"""The storage interface both engine adapters implement.

Its errors are `iot_pipeline.errors`' StoreError family: TransientStoreError is worth retrying
later (unreachable, 429, 5xx), PermanentStoreError is not (bad request, auth, missing
template). Third-party client errors are translated into these at the adapter's edge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from iot_pipeline.errors import (
    PermanentStoreError,
    StoreConflict,
    StoreError,
    StoreRefused,
    TransientStoreError,
)


@contextmanager
def translated(store_error: Callable[[Exception], StoreError | None]) -> Iterator[None]:
    """Run the block with a client's exceptions translated: `store_error` (one per engine,
    shared by its sync and async adapters) names the StoreError an exception stands for, or
    None for one that is not the client's (it passes unchanged)."""
    try:
        yield
    except Exception as exc:
        error = store_error(exc)
        if error is None:
            raise
        raise error from exc


def is_transient_status(status: int) -> bool:
    """Whether an HTTP status from the engine is worth retrying (overload or server error)."""
    return status == 429 or status >= 500


def error_for_status(status: int) -> type[StoreError]:
    """The error class an engine's HTTP status translates to: a login refused or without
    the privilege (401, 403) is the engine's refusal, never the request's fault."""
    if is_transient_status(status):
        return TransientStoreError
    return StoreRefused if status in (401, 403) else PermanentStoreError


# The error types by which an engine refuses a document for what it holds: a value its field
# cannot take, a field the strict mapping does not know, a body it cannot parse. Every
# other refusal (authentication, authorisation, blocks, missing indices, shard limits) is
# the engine's, whatever the document (docs/failure-model.md).
DATA_REFUSALS = frozenset(
    {
        "mapper_parsing_exception",
        "document_parsing_exception",
        "strict_dynamic_mapping_exception",
        "parse_exception",
        "json_parse_exception",
        "x_content_parse_exception",
        "illegal_argument_exception",
        "number_format_exception",
    }
)


def is_data_refusal(status: int, error_type: str) -> bool:
    """Whether a refused item's error blames the document (a 400 of a data type)."""
    return status == 400 and error_type in DATA_REFUSALS


@dataclass(frozen=True)
class IndexAction:
    """One document operation under a deterministic id.

    `op="index"` creates or overwrites `document`; `op="create"` writes it only when the id is
    free; `op="update"` sends `document` as the body of an update (a script with an upsert),
    for read-modify-write done by the engine. With `if_seq_no`/`if_primary_term` an index
    succeeds only over that version of the document (optimistic concurrency: 409 otherwise).
    """

    index: str
    id: str
    document: dict[str, Any]
    op: str = "index"
    if_seq_no: int | None = None
    if_primary_term: int | None = None
    # An update whose script raced another write is redone by the engine this many times.
    retry_on_conflict: int | None = None
    # The action's bulk lines when already serialised (checked per record, sent as they are).
    encoded: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Versioned:
    """A stored document with the version an optimistic write must name."""

    source: dict[str, Any]
    seq_no: int
    primary_term: int


@dataclass(frozen=True)
class ItemFailure:
    """One document of a bulk request that was not indexed."""

    action: IndexAction
    status: int
    error_type: str
    reason: str

    @property
    def retryable(self) -> bool:
        return is_transient_status(self.status) and not self.systemic

    @property
    def conflict(self) -> bool:
        """Lost an optimistic-concurrency race (someone wrote the document first)."""
        return self.status == 409

    @property
    def systemic(self) -> bool:
        """The engine refused for a reason of its own, not the document's (see
        `is_data_refusal`): a block, a privilege, a missing index, a shard limit."""
        if self.blocked:
            return True
        return not (is_transient_status(self.status) or self.conflict or self.data)

    @property
    def blocked(self) -> bool:
        """A block on the index or cluster: the flood-stage watermark's answers 429, yet
        retrying within seconds cannot lift it (an operator or freed disk must)."""
        return self.error_type == "cluster_block_exception"

    @property
    def data(self) -> bool:
        """The document itself is the reason (a mapping or parse error): a dead letter."""
        return is_data_refusal(self.status, self.error_type)


@dataclass
class BulkOutcome:
    """Per-item result of one bulk request."""

    indexed: int = 0
    failures: list[ItemFailure] = field(default_factory=list)


class SearchStore(Protocol):
    """What the pipeline needs from a search engine."""

    engine: str

    def ensure_templates(self, templates: dict[str, dict[str, Any]]) -> None:
        """Create or update the index templates (name -> body), and add the fields a template
        gained to the indices that already exist (mappings only grow: a new version of the
        pipeline never meets an index without its fields)."""

    def bulk_index(self, actions: list[IndexAction], refresh: bool = False) -> BulkOutcome:
        """Index documents (refresh: make them searchable at once); report failed items."""

    def refresh(self, index: str) -> None:
        """Make everything indexed so far searchable."""

    def get_many(self, index: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The stored sources of these ids (missing ones are left out)."""

    def get_versioned(self, refs: list[tuple[str, str]]) -> dict[tuple[str, str], Versioned]:
        """Real-time reads of (index, id) pairs, with their versions (missing ones left out)."""

    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        """Run a search; returns the raw response body."""

    def count(self, index: str, query: dict[str, Any] | None = None) -> int:
        """Number of documents matching the query."""

    def list_indices(self, pattern: str) -> list[str]:
        """Names of the indices matching a pattern."""

    def delete_indices(self, names: list[str]) -> None:
        """Delete whole indices (retention)."""

    def close(self) -> None:
        """Release connections."""


class AsyncSearchStore(Protocol):
    """What the API needs from a search engine (async)."""

    engine: str

    async def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        """Run a search; returns the raw response body (missing indices match nothing)."""

    async def put(
        self,
        index: str,
        doc_id: str,
        document: dict[str, Any],
        version: tuple[int, int] | None = None,
    ) -> None:
        """Create or overwrite one document, searchable at once; with `version` (its seq_no
        and primary term, as a search with `seq_no_primary_term` gives them) only over that
        version: StoreConflict when it changed since."""

    async def delete(self, index: str, doc_id: str) -> bool:
        """Delete one document, gone from searches at once; False when there was none (nor
        its index)."""

    async def ping(self) -> bool:
        """Whether the engine answers."""

    async def close(self) -> None:
        """Release connections."""


class AsyncClientStore:
    """What both official async clients do alike (the engine adapters add `search`)."""

    client: Any

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except Exception:  # any failure means "not ready"
            return False

    async def close(self) -> None:
        await self.client.close()


def parse_bulk_response(actions: list[IndexAction], body: dict[str, Any]) -> BulkOutcome:
    """Map a bulk response's items back onto the actions (same order)."""
    outcome = BulkOutcome()
    items = body.get("items", [])
    if len(items) != len(actions):
        raise TransientStoreError(f"bulk answered {len(items)} items for {len(actions)} actions")
    for action, item in zip(actions, items, strict=True):
        result = next(iter(item.values()))
        status = int(result.get("status", 500))
        if status < 300:
            outcome.indexed += 1
            continue
        error = result.get("error") or {}
        outcome.failures.append(
            ItemFailure(
                action,
                status,
                str(error.get("type", "unknown")) if isinstance(error, dict) else "unknown",
                str(error.get("reason", error)) if isinstance(error, dict) else str(error),
            )
        )
    return outcome


# Only what per-item handling reads: a response for 5000 documents shrinks tenfold.
BULK_FILTER = "errors,items.*.status,items.*.error"


def encoded_action(action: IndexAction) -> bytes:
    """One action's two NDJSON lines of a bulk body (orjson: several times `json`'s speed)."""
    if action.encoded is not None:
        return action.encoded
    meta: dict[str, Any] = {"_index": action.index, "_id": action.id}
    if action.if_seq_no is not None:
        meta |= {"if_seq_no": action.if_seq_no, "if_primary_term": action.if_primary_term}
    if action.retry_on_conflict is not None:
        meta["retry_on_conflict"] = action.retry_on_conflict
    return orjson.dumps({action.op: meta}) + b"\n" + orjson.dumps(action.document) + b"\n"


def encode_action(op: str, index: str, doc_id: str, document: dict[str, Any]) -> bytes:
    """The two NDJSON lines of one bulk action."""
    meta = orjson.dumps({op: {"_index": index, "_id": doc_id}})
    return meta + b"\n" + orjson.dumps(document) + b"\n"


def encoded_document(action: IndexAction) -> bytes:
    """The JSON of an action's document, the bytes its bulk body carries (encoded once)."""
    return encoded_action(action).split(b"\n", 2)[1]


def bulk_body(actions: list[IndexAction]) -> bytes:
    """The bulk API body of these actions, serialised once on our side."""
    return b"".join(encoded_action(a) for a in actions)


def found_sources(response: Any) -> dict[str, dict[str, Any]]:
    """id -> source of the documents an mget response found."""
    return {d["_id"]: d["_source"] for d in response["docs"] if d.get("found")}


def mget_body(refs: list[tuple[str, str]]) -> dict[str, Any]:
    """An mget body for (index, id) pairs that asks for the versions too."""
    return {"docs": [{"_index": index, "_id": doc_id} for index, doc_id in refs]}


def found_versioned(response: Any) -> dict[tuple[str, str], Versioned]:
    """(index, id) -> document and version of what an mget response found (an index that
    does not exist yet is a per-document error: left out like a missing document)."""
    return {
        (d["_index"], d["_id"]): Versioned(d["_source"], int(d["_seq_no"]), int(d["_primary_term"]))
        for d in response["docs"]
        if d.get("found")
    }


def search_all(
    store: SearchStore, index: str, body: dict[str, Any], page: int = 5000
) -> list[dict[str, Any]]:
    """Every hit of a query, page after page (search_after). The body's sort must be a total
    order (a reading's sensor and event id together), or hits tied across a page boundary
    are skipped."""
    body = {**body, "size": page}
    hits: list[dict[str, Any]] = []
    while True:
        found = store.search(index, body)["hits"]["hits"]
        hits += found
        if len(found) < page:
            return hits
        body["search_after"] = found[-1]["sort"]


@contextmanager
def conflicts_translated() -> Iterator[None]:
    """A 409 of the engine (a version that changed since) raised as StoreConflict."""
    try:
        yield
    except PermanentStoreError as exc:
        if " 409" in str(exc) or "version_conflict" in str(exc):
            raise StoreConflict(str(exc)) from exc
        raise


def version_params(version: tuple[int, int] | None) -> dict[str, int]:
    """The optimistic-concurrency parameters of a write over `version` (none without)."""
    if version is None:
        return {}
    return {"if_seq_no": version[0], "if_primary_term": version[1]}


def is_missing_index(error: StoreError) -> bool:
    """Whether the engine refused because the index does not exist (yet)."""
    return "index_not_found" in str(error)
