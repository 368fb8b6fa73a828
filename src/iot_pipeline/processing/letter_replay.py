"""A dead letter replayed as the live path cleaned its record: through its source partition's
cleaner state at its source offset.

The dead-letter topic has no checkpoint of its own, and its records mix every sensor of
every partition; cleaned with the dead-letter topic's own history, a replayed reading would
be judged without its sensor's past (no spike, stuck or duplicate check could see it). So
each letter is cleaned with the state its source partition had just before its source
offset (`dlq.source.*` headers): the nearest live checkpoint at or before it (live key or
ring, see state_store), brought up to the offset by cleaning the source records in between
without storing them. Letters of one source partition come in offset order, so each warm-up
continues from the previous letter's. When the source records are gone (retention), the
letter is judged with what is known, and the log says so.
"""

from __future__ import annotations

import logging
from datetime import datetime

import redis

from iot_pipeline.cleaning import BatchResult, CleaningPolicy, RawRecord, SensorState, clean_batch
from iot_pipeline.cleaning.metadata import Declaration
from iot_pipeline.contracts.ranges import OffsetRange
from iot_pipeline.errors import KafkaReadError
from iot_pipeline.processing.reader import log_start, read_pieces
from iot_pipeline.processing.state_store import WARM_UP_LIMIT, load_replay_states
from iot_pipeline.settings import Settings

log = logging.getLogger(__name__)

Sensors = dict[str, SensorState]


class SourceStates:
    """The cleaner state of each source partition, at the letter being replayed."""

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        ingest_time: datetime,
        policy: CleaningPolicy,
        declared: dict[str, Declaration],
    ) -> None:
        self.settings = settings
        self.client = client
        self.ingest_time = ingest_time
        self.policy = policy
        self.declared = declared
        self._at: dict[tuple[str, int], tuple[Sensors, int]] = {}
        self._unsourced: Sensors = {}

    def clean(self, records: list[RawRecord]) -> BatchResult:
        """Clean replayed letters, each with its source partition's state at its offset."""
        result = BatchResult()
        for record in records:
            # a letter without its source headers keeps the history of such letters
            source = record.source
            states = self._unsourced if source is None else self._state_at(*source)
            part = clean_batch([record], states, self.ingest_time, self.policy, self.declared)
            result.readings += part.readings
            result.dead_letters += part.dead_letters
            if record.source is not None:
                topic, partition, offset = record.source
                self._at[topic, partition] = (states, offset + 1)
        return result

    def _state_at(self, topic: str, partition: int, offset: int) -> Sensors:
        held = self._at.get((topic, partition))
        if held is None or held[1] > offset or offset - held[1] > WARM_UP_LIMIT:
            held = self._checkpoint(topic, partition, offset)
        states, position = held
        if position < offset:
            before = OffsetRange(topic=topic, partition=partition, start=position, end=offset)
            try:
                for piece in read_pieces(self.settings, before):
                    clean_batch(piece, states, self.ingest_time, self.policy, self.declared)
            except KafkaReadError as exc:
                log.warning(
                    "dead-letter replay: %s cannot be read (%s); the letter at %d is judged "
                    "with the history known up to there",
                    before,
                    exc,
                    offset,
                )
        self._at[topic, partition] = (states, offset)
        return states

    def _checkpoint(self, topic: str, partition: int, offset: int) -> tuple[Sensors, int]:
        at = OffsetRange(topic=topic, partition=partition, start=offset, end=offset)
        try:
            origin = load_replay_states(
                self.client,
                self.settings.search_index_prefix,
                at,
                "dead-letters",
                lambda: log_start(self.settings, at),
            )
        except KafkaReadError as exc:
            log.warning("dead-letter replay: no log start for %s (%s): empty state", at, exc)
            return {}, offset
        if offset - origin.offset > WARM_UP_LIMIT:
            log.warning(
                "dead-letter replay: the nearest checkpoint of %s[%d] is %d records before %d; "
                "starting from empty state",
                topic,
                partition,
                offset - origin.offset,
                offset,
            )
            return {}, offset
        return origin.states, origin.offset
