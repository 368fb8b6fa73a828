"""One vocabulary: each closed set of names is spelled once, in `iot_pipeline.vocabulary`, and
index names once, in `iot_pipeline.indices`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

from iot_pipeline import vocabulary
from iot_pipeline.schema import METRICS, SensorReading
from iot_pipeline.vocabulary import (
    INVALIDATING,
    METRIC_NAMES,
    RESOLUTIONS,
    SCOPES,
    UNIT_CONVERTED,
    Flag,
    Reason,
    Resolution,
    Scope,
)

SRC = Path(vocabulary.__file__).parent


def test_every_value_has_its_constant_and_every_constant_its_value() -> None:
    for literal in (Flag, Reason):
        values = set(get_args(literal))
        constants = {
            name: value
            for name, value in vars(vocabulary).items()
            if name.isupper() and isinstance(value, str) and value in values
        }
        assert {name.lower() for name in constants} == values
        assert all(name.lower() == value for name, value in constants.items())


def test_the_sets_agree_with_the_schema_and_the_windows() -> None:
    assert set(METRIC_NAMES) == set(METRICS)
    assert set(METRIC_NAMES) == set(get_args(SensorReading.model_fields["metric"].annotation))
    assert set(get_args(Flag)) == INVALIDATING | {UNIT_CONVERTED}
    assert set(RESOLUTIONS) == set(get_args(Resolution))
    assert set(SCOPES) == set(get_args(Scope))


def test_names_are_not_spelled_again_elsewhere_in_the_package() -> None:
    index_name = re.compile(r"""f?["'][^"'\n]*-(readings|agg)-""")
    literal_of = re.compile(r"""Literal\[\s*["'](temperature|unit_converted|1m|sensor)["']""")
    spelled = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name in ("vocabulary.py", "indices.py"):
            continue
        text = path.read_text()
        for pattern in (index_name, literal_of):
            spelled += [f"{path.relative_to(SRC)}: {m.group(0)}" for m in pattern.finditer(text)]
    assert spelled == []
