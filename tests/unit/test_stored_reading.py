"""The stored reading has one model (`contracts.readings.Reading`): the document the workers
write validates as it, the API serves it, and the index mapping holds exactly its fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ConfigDict

from iot_pipeline.cleaning import RawRecord, clean_batch
from iot_pipeline.cleaning.batch import CleaningPolicy
from iot_pipeline.cleaning.overrides import Override, apply_overrides
from iot_pipeline.contracts.readings import STORED_ONLY, Reading, reading_document
from iot_pipeline.vocabulary import REJECT

from support.readings import sample_reading

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class _Exactly(Reading):
    """The model, refusing any field it does not declare."""

    model_config = ConfigDict(extra="forbid")


def _documents() -> list[dict[str, Any]]:
    """Documents as the worker writes them: one plain, one with an operator's override."""
    raw = [
        RawRecord(json.dumps(sample_reading(event_id=f"e-{n}", seq=n)).encode(), "t", 0, n)
        for n in range(2)
    ]
    cleaned = clean_batch(raw, {}, NOW, CleaningPolicy()).readings
    sensor = cleaned[0].reading.sensor_id
    moment = cleaned[1].reading.event_time.timestamp()
    override = Override("o-1", sensor, moment, moment + 1, REJECT)
    overridden = apply_overrides(cleaned[1:], [override])
    return [
        reading_document(c, "b-1", "2026-11-28T12:00:00.000Z") for c in cleaned[:1] + overridden
    ]


def test_the_documents_the_workers_write_are_the_model_the_api_serves() -> None:
    documents = _documents()
    assert any("override" in d for d in documents)
    for document in documents:
        assert document.keys() >= STORED_ONLY
        served = {k: v for k, v in document.items() if k not in STORED_ONLY}
        _Exactly.model_validate(served)  # nothing undeclared, every required field there


@pytest.mark.parametrize("name", sorted(Reading.model_fields))
def test_the_index_mapping_holds_every_field_of_the_model(name: str) -> None:
    template = json.loads((ROOT / "elasticsearch" / "readings.template.json").read_text())
    assert name in template["template"]["mappings"]["properties"]


def test_the_index_mapping_holds_nothing_else() -> None:
    template = json.loads((ROOT / "elasticsearch" / "readings.template.json").read_text())
    stored = set(template["template"]["mappings"]["properties"])
    assert stored == set(Reading.model_fields) | STORED_ONLY
