"""Operator overrides, MADIS's subjective lists: the verdict an accept (G) or reject (B) list
gives a reading. Pure logic; storing and applying them is `processing.overrides`.

An override never removes a flag: the rules' verdict stays in the flags (and in `auto_qc`
on a stored reading), so lifting the override gives it back.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from iot_pipeline.cleaning.batch import CleanReading, qc_verdict
from iot_pipeline.vocabulary import (
    ACCEPT,
    QC_ACCEPTED,
    QC_BLACKLISTED,
    QC_CHECKED,
    QC_REJECTED,
    QC_VALID,
    REJECT,
    OverrideAction,
    Qc,
)

# The action a stored reading's `override` verdict stands for.
ACTION_OF: Final[dict[str, OverrideAction]] = {QC_ACCEPTED: ACCEPT, QC_BLACKLISTED: REJECT}


@dataclass(frozen=True)
class Override:
    """One sensor's readings of [start, end) (event time, epoch seconds) accepted or rejected."""

    id: str
    sensor_id: str
    start: float
    end: float
    action: OverrideAction

    def covers(self, epoch: float) -> bool:
        return self.start <= epoch < self.end


def override_verdict(auto: Qc, actions: Iterable[OverrideAction]) -> Qc:
    """The verdict of a reading whose rules said `auto`, under these overrides: a reject wins
    over an accept; an accept makes any reading a level-1 check did not reject `G` (a value
    no instrument can measure, a duplicate or a skewed clock stays `X`)."""
    found = set(actions)
    if REJECT in found:
        return QC_BLACKLISTED
    if ACCEPT in found and auto != QC_REJECTED:
        return QC_ACCEPTED
    return auto


def by_sensor(overrides: Iterable[Override]) -> dict[str, list[Override]]:
    """Overrides grouped by their sensor."""
    grouped: dict[str, list[Override]] = defaultdict(list)
    for override in overrides:
        grouped[override.sensor_id].append(override)
    return dict(grouped)


def covering(overrides: Sequence[Override], epoch: float) -> list[OverrideAction]:
    """The actions of the overrides (of one sensor) that cover this instant."""
    return [o.action for o in overrides if o.covers(epoch)]


def apply_overrides(
    readings: list[CleanReading], overrides: Iterable[Override]
) -> list[CleanReading]:
    """The readings with the verdict the active overrides give them (the same objects where
    no override changes the rules' verdict)."""
    grouped = by_sensor(overrides)
    if not grouped:
        return readings
    out = []
    for clean in readings:
        mine = grouped.get(clean.reading.sensor_id)
        if mine:
            auto = clean.auto_qc
            verdict = override_verdict(auto, covering(mine, clean.reading.event_time.timestamp()))
            operator = None if verdict == auto else verdict
            if operator != clean.override:
                clean = dataclasses.replace(clean, override=operator)
        out.append(clean)
    return out


def verdict_fields(auto: Qc, operator: Qc | None) -> dict[str, Any]:
    """A stored reading's verdict fields: `qc` and `valid` as the operator's verdict says,
    with `override` and `auto_qc` (the rules' verdict) when there is one; None values mean
    the field is absent."""
    if operator is None or operator == auto:
        return {"qc": auto, "valid": auto in QC_VALID, "override": None, "auto_qc": None}
    return {"qc": operator, "valid": operator in QC_VALID, "override": operator, "auto_qc": auto}


# What a later rule reads of a stored reading to judge it again (rejudged, stored_screened).
VERDICT_FIELDS: Final[tuple[str, ...]] = ("flags", "override", "screened", "qc", "auto_qc")


def stored_screened(doc: dict[str, Any]) -> bool:
    """Whether the cleaner had a history to judge a stored reading by (its `screened`): a
    later rule's verdict keeps it, so a flag added and taken away again leaves the reading
    as the cleaner judged it, whatever the order in which its neighbours arrived. Readings
    stored before the field existed: read back from their verdict."""
    screened = doc.get("screened")
    if isinstance(screened, bool):
        return screened
    return (doc.get("auto_qc") or doc.get("qc")) != QC_CHECKED


def rejudged(flags: Sequence[str], screened: bool, override: str | None) -> dict[str, Any]:
    """The partial update of a stored reading whose flags a later rule (cross-metric, buddy
    check) changed: flags and the rules' verdict move, an operator's override stays."""
    auto = qc_verdict(flags, screened)
    action = ACTION_OF.get(override or "")
    if action is None:
        return {"flags": list(flags), "valid": auto in QC_VALID, "qc": auto}
    fields = verdict_fields(auto, override_verdict(auto, [action]))
    if fields["override"] is not None:
        del fields["override"]  # unchanged: stays as stored
    return {"flags": list(flags), **fields}
