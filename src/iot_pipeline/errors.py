"""The errors this package raises on purpose, in one hierarchy.

Whether a failure may pass by itself decides what happens next: the worker retries a
`TransientError` with back-off, the orchestrator reports a `PermanentError` and, if it keeps
failing, quarantines the records that make it fail. A record is bad only when the record is
the reason: a range that fails for a `TransientError`, a `StoreRefused` or a timeout holds
its partition (a visible stall) and is never quarantined. The API answers 503 with
`Retry-After` for a transient error of a dependency it names, 4xx for bad input and 502 for
a refusal of the search store.

    PipelineError
    ├── TransientError                may pass by itself: retry later
    │   ├── TransientStoreError       the search engine is unreachable, overloaded or failing
    │   ├── KafkaUnavailable          Kafka does not answer
    │   │   ├── KafkaReadError        a range could not be read completely
    │   │   └── OffsetsError          group offsets could not be read or committed
    │   ├── RedisUnavailable          Redis (broker, run state, cleaner state) does not answer
    │   ├── DeadLetterError           dead letters could not be written durably
    │   └── PartitionBusy             another task holds the partition
    └── PermanentError                retrying the same thing cannot help
        ├── PermanentStoreError       the search engine refused (bad request, auth, mapping)
        │   ├── StoreConflict         a write named a version of a document that changed since
        │   └── StoreRefused          it refuses writes for a reason of its own (a block,
        │                             a privilege, a missing index): a stall, not bad data
        ├── ConfigurationError        a setting, secret or installation is wrong
        ├── DataError                 input that cannot be used as given
        ├── RangeFailed               processing a range raised (the message names the cause)
        ├── RangeRedelivered          a range's worker died too often while processing it
        └── BatchFailed               a batch ended with ranges failed or unfinished

    StoreError is the search engine's family: TransientStoreError and PermanentStoreError
    are both StoreErrors.

Modules add their own leaves under these (for example `StackError` and `SecretError` are
`ConfigurationError`s, the API's `BadCursor` is a `DataError`). Errors of third-party
clients (opensearch-py, elasticsearch, confluent-kafka, redis) are translated into these
classes where the package calls them, so no caller needs to know a client's exceptions.
"""

from __future__ import annotations


class PipelineError(RuntimeError):
    """A failure this package detected and named."""


class TransientError(PipelineError):
    """A failure that may pass by itself: retry later."""


class PermanentError(PipelineError):
    """A failure that retrying the same thing cannot fix."""


class StoreError(PipelineError):
    """The search engine refused or failed an operation."""


class TransientStoreError(StoreError, TransientError):
    """The search engine is unreachable, overloaded (429) or failing (5xx): retry later."""


class PermanentStoreError(StoreError, PermanentError):
    """The search engine refused the operation (bad request, auth, missing template)."""


class StoreConflict(PermanentStoreError):
    """A write named a version of a document that changed since (optimistic concurrency)."""


class StoreRefused(PermanentStoreError):
    """The engine refuses writes for a reason of its own, not the documents': a write block
    (the flood-stage watermark of a full disk), a login without the privilege, an index it
    will not create, a shard limit. Retrying now cannot help and no record is to blame: the
    range stalls, visibly, until an operator removes the cause (docs/failure-model.md)."""


class KafkaUnavailable(TransientError):
    """Kafka does not answer: offsets, lag and records are out of reach for now."""


class KafkaReadError(KafkaUnavailable):
    """The range could not be read completely (retry the task)."""


class OffsetsError(KafkaUnavailable):
    """Kafka could not answer or refused an offsets request or a commit (retry the run)."""


class RedisUnavailable(TransientError):
    """Redis does not answer: broker, run state or cleaner state are out of reach for now."""


class DeadLetterError(TransientError):
    """Dead letters could not be written durably (retry the task)."""


class PartitionBusy(TransientError):
    """Another task holds the partition (the task retries after a while)."""


class ConfigurationError(PermanentError):
    """A setting, secret or installation is wrong: an operator must fix it."""


class DataError(PermanentError):
    """Input that cannot be used as given."""


class RangeFailed(PermanentError):
    """Processing a range raised (permanent for this attempt; the message names why)."""


class RangeRedelivered(PermanentError):
    """The task was redelivered too often after its worker died."""


class BatchFailed(PermanentError):
    """At least one range of a batch failed or did not finish in time."""
