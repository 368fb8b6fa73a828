"""Operator overrides, the pure part: a reject makes a reading `B` and invalid whatever its
flags, an accept makes any reading level 1 did not reject `G` and valid, a reject beats an
accept, flags are never removed, and the stored form keeps the rules' verdict beside."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from iot_pipeline.cleaning import CleaningPolicy, CleanReading, RawRecord, clean_batch
from iot_pipeline.cleaning.overrides import (
    Override,
    apply_overrides,
    override_verdict,
    rejudged,
    stored_screened,
    verdict_fields,
)
from iot_pipeline.contracts.readings import reading_document
from iot_pipeline.vocabulary import ACCEPT, QC_VALUES, REJECT

from support.readings import sample_reading

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SENSOR = "casa-anfa-01-temperature"


def _at(minutes: float) -> str:
    return (NOW - timedelta(minutes=60 - minutes)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _cleaned(values: list[float], **change: object) -> list[CleanReading]:
    """One reading a minute from 60 minutes before NOW, with these values."""
    records = [
        RawRecord(
            json.dumps(
                sample_reading(event_id=f"e-{n}", seq=n, value=value, event_time=_at(n), **change)
            ).encode(),
            "t",
            0,
            n,
        )
        for n, value in enumerate(values)
    ]
    return clean_batch(records, {}, NOW, CleaningPolicy()).readings


def _override(action: str, start: float, end: float, sensor: str = SENSOR) -> Override:
    epoch = (NOW - timedelta(minutes=60)).timestamp()
    return Override(f"o-{action}-{start}", sensor, epoch + 60 * start, epoch + 60 * end, action)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("auto", "actions", "verdict"),
    [
        ("S", [], "S"),
        ("S", ["reject"], "B"),
        ("C", ["accept"], "G"),
        ("Q", ["accept"], "G"),
        ("Q", ["reject"], "B"),
        ("X", ["accept"], "X"),  # an accept never lifts a level-1 rejection
        ("X", ["reject"], "B"),
        ("Q", ["accept", "reject"], "B"),  # reject beats accept, in any order
        ("S", ["reject", "accept"], "B"),
    ],
)
def test_the_verdict_under_overrides(auto: str, actions: list[str], verdict: str) -> None:
    assert override_verdict(auto, actions) == verdict  # type: ignore[arg-type]


def test_a_reject_invalidates_clean_readings_within_its_range_only() -> None:
    readings = _cleaned([20.0, 20.1, 20.2, 20.3])
    assert [r.qc for r in readings] == ["C", "S", "S", "S"]
    out = apply_overrides(readings, [_override(REJECT, 1, 3)])
    assert [r.qc for r in out] == ["C", "B", "B", "S"]  # [start, end)
    assert [r.valid for r in out] == [True, False, False, True]
    assert [r.auto_qc for r in out] == ["C", "S", "S", "S"]
    assert out[0] is readings[0]
    assert out[3] is readings[3]


def test_an_accept_lifts_a_spike_but_not_an_impossible_value() -> None:
    readings = _cleaned([20.0, 20.1, 20.0, 20.1, 35.0, 20.2, 75.0])
    assert [r.qc for r in readings][4:] == ["Q", "S", "X"]
    assert "spike" in readings[4].flags
    assert readings[6].flags == ("impossible_value",)
    out = apply_overrides(readings, [_override(ACCEPT, 0, 60)])
    assert [r.qc for r in out] == ["G"] * 6 + ["X"]
    assert [r.valid for r in out] == [True] * 6 + [False]
    assert out[4].flags == readings[4].flags  # flags stay: the rules' verdict is still knowable
    assert out[4].auto_qc == "Q"


def test_a_reject_beats_an_accept_and_other_sensors_are_untouched() -> None:
    readings = _cleaned([20.0, 20.1, 20.2])
    both = [_override(ACCEPT, 0, 60), _override(REJECT, 1, 2)]
    assert [r.qc for r in apply_overrides(readings, both)] == ["G", "B", "G"]
    elsewhere = [_override(REJECT, 0, 60, sensor="casa-anfa-02-temperature")]
    assert apply_overrides(readings, elsewhere) == readings
    assert apply_overrides(readings, []) is readings


def test_the_stored_document_keeps_the_rules_verdict_beside_the_operators() -> None:
    (reading,) = apply_overrides(_cleaned([20.0]), [_override(REJECT, 0, 60)])
    document = reading_document(reading, "b", "2026-11-28T12:00:00.000Z")
    assert (document["qc"], document["valid"]) == ("B", False)
    assert (document["override"], document["auto_qc"]) == ("B", "C")
    (plain,) = _cleaned([20.0])
    assert "override" not in reading_document(plain, "b", "now")


def test_verdict_fields_name_an_override_only_when_it_changes_the_verdict() -> None:
    assert verdict_fields("X", "X") == {
        "qc": "X",
        "valid": False,
        "override": None,
        "auto_qc": None,
    }
    assert verdict_fields("Q", "G") == {"qc": "G", "valid": True, "override": "G", "auto_qc": "Q"}
    assert verdict_fields("S", None)["valid"] is True


def test_a_later_rule_moves_the_flags_and_the_rules_verdict_never_the_override() -> None:
    # cross-metric or buddy check flags an accepted reading: it stays G, valid
    assert rejudged(["spatial"], True, "G") == {
        "flags": ["spatial"],
        "qc": "G",
        "valid": True,
        "auto_qc": "Q",
    }
    # a rejected reading cleared by the rule: stays B, invalid
    assert rejudged([], True, "B") == {"flags": [], "qc": "B", "valid": False, "auto_qc": "S"}
    # no override: as before
    assert rejudged(["cross_metric"], True, None) == {
        "flags": ["cross_metric"],
        "valid": False,
        "qc": "Q",
    }


def test_a_flag_added_and_taken_away_again_leaves_the_cleaners_verdict() -> None:
    """A reading the cleaner had no history for is C; a buddy-check flag put on it and
    lifted again must give C back (a replay never sees the flag and stores C)."""
    first = sample_reading(value=20.0)
    clean = clean_batch([RawRecord(json.dumps(first).encode(), "t", 0, 0)], {}, NOW)
    doc = reading_document(clean.readings[0], "b", "2026-01-01T00:00:00Z")
    assert (doc["qc"], doc["screened"]) == ("C", False)
    questioned = {**doc, **rejudged(["spatial"], stored_screened(doc), None)}
    assert questioned["qc"] == "Q"
    cleared = {**questioned, **rejudged([], stored_screened(questioned), None)}
    assert cleared["qc"] == "C"
    # stored before `screened` existed: read back from the verdict
    assert stored_screened({"qc": "C"}) is False
    assert stored_screened({"qc": "S"}) is True
    assert stored_screened({"qc": "G", "auto_qc": "C"}) is False


def test_every_verdict_is_mapped_in_the_index_templates() -> None:
    folder = Path(__file__).resolve().parents[2] / "elasticsearch"
    aggregates = json.loads((folder / "aggregates.template.json").read_text(encoding="utf-8"))
    counts = aggregates["template"]["mappings"]["properties"]["qc"]["properties"]
    assert set(counts) == set(QC_VALUES) >= {"G", "B"}
    readings = json.loads((folder / "readings.template.json").read_text(encoding="utf-8"))
    assert {"qc", "auto_qc", "override"} <= set(readings["template"]["mappings"]["properties"])
