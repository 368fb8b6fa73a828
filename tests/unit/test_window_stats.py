"""Mergeable window statistics and the shape of the 1-minute queries (pure logic)."""

from __future__ import annotations

import json
import math
import random
import re
import statistics
from typing import Any

import pytest

from iot_pipeline.aggregation.minutes import (
    CLAUSE_BUDGET,
    _halves,
    _members,
    _query_chunks,
    _runs,
    clause_cost,
    collect_minutes,
)
from iot_pipeline.aggregation.recompute import unchanged
from iot_pipeline.aggregation.stats import Moments, close, merge
from iot_pipeline.aggregation.windows import Window
from iot_pipeline.errors import TransientStoreError
from iot_pipeline.processing.cross_metric import slot_runs


def _moments(values: list[float]) -> Moments:
    """Direct two-pass statistics, as a 1-minute window would hold them."""
    if not values:
        return Moments()
    mean = statistics.fmean(values)
    return Moments(
        len(values),
        math.fsum(values),
        min(values),
        max(values),
        math.fsum((v - mean) ** 2 for v in values),
    )


@pytest.mark.parametrize("seed", range(5))
def test_merging_windows_equals_computing_over_all_values(seed: int) -> None:
    rng = random.Random(seed)
    parts = [[rng.gauss(20, 3) for _ in range(rng.randint(0, 12))] for _ in range(60)]
    merged = merge(_moments(p) for p in parts)
    values = [v for p in parts for v in p]
    assert merged.count == len(values)
    assert merged.min == min(values)
    assert merged.max == max(values)
    assert merged.mean == pytest.approx(statistics.fmean(values), rel=1e-12)
    assert merged.std == pytest.approx(statistics.pstdev(values), rel=1e-9)


def test_merge_stays_exact_where_the_sum_of_squares_cancels() -> None:
    # A large offset with a small spread (pressure in Pa, say): Σx² - (Σx)²/n loses most
    # significant digits here, the pairwise merge keeps them.
    rng = random.Random(7)
    parts = [[1e5 + rng.random() for _ in range(12)] for _ in range(24)]
    values = [v for p in parts for v in p]
    merged = merge(_moments(p) for p in parts)
    assert merged.std == pytest.approx(statistics.pstdev(values), rel=1e-9)
    naive = (math.fsum(v * v for v in values) - math.fsum(values) ** 2 / len(values)) / len(values)
    assert not math.isclose(max(naive, 0.0), statistics.pvariance(values), rel_tol=1e-9)


def test_merge_of_nothing_or_empty_windows_has_no_statistics() -> None:
    assert merge([]) == Moments()
    empty = merge([Moments(), Moments()])
    assert empty.count == 0
    assert empty.mean is None
    assert empty.std is None


def test_engine_stats_of_equal_values_have_no_spread() -> None:
    stats = {"count": 3, "sum": 60.3, "min": 20.1, "max": 20.1, "variance": 3.5e-15}
    assert Moments.from_engine(stats).m2 == 0.0
    assert Moments.from_engine({"count": 0}) == Moments()


def test_recomputation_noise_is_no_change_but_a_new_reading_is() -> None:
    stored = {"count": 3, "readings": 3, "sum": 60.3, "mean": 20.1, "quality": {}}
    assert unchanged(stored, {**stored, "sum": 60.300000000000004})
    assert not unchanged(stored, {**stored, "sum": 60.4})
    assert not unchanged(stored, {**stored, "count": 4})
    assert not unchanged({"count": 3}, {"count": 3, "m2": 0.5})  # written before m2 existed
    assert close(None, None)
    assert not close(None, 0.0)


def test_minutes_become_contiguous_runs() -> None:
    assert _runs([120, 60, 180, 600]) == ((60, 240), (600, 660))


def _minutes(key: str, starts: list[int]) -> list[Window]:
    return [Window("sensor", key, "no2", "1m", s) for s in starts]


def test_queries_cover_only_the_touched_minutes_not_the_span_between_them() -> None:
    fresh = [w for k in ("a", "b", "c") for w in _minutes(k, [86400 * 30, 86400 * 30 + 60])]
    old = _minutes("a", [0])  # one reading thirty days older
    (chunk,) = list(_query_chunks(fresh + old))
    covered = {(key, run) for _, keys, runs in chunk for key in keys for run in runs}
    assert covered == {
        ("a", (0, 60)),
        ("a", (86400 * 30, 86400 * 30 + 120)),
        ("b", (86400 * 30, 86400 * 30 + 120)),
        ("c", (86400 * 30, 86400 * 30 + 120)),
    }
    # keys with the same minutes share one clause
    assert sorted(keys for _, keys, _ in chunk) == [["a"], ["b", "c"]]


def test_scattered_minutes_are_split_into_bounded_queries() -> None:
    scattered = _minutes("a", [i * 120 for i in range(1200)])  # 1200 separate minutes
    chunks = list(_query_chunks(scattered))
    assert all(sum(clause_cost(clause) for clause in c) <= CLAUSE_BUDGET for c in chunks)
    assert sum(len(runs) for c in chunks for _, _, runs in c) == 1200
    # each window belongs to exactly one chunk (a reading is never counted twice)
    owners = [set(_members(c, scattered).values()) for c in chunks]
    assert sum(len(o) for o in owners) == len(scattered)
    assert set().union(*owners) == set(scattered)


def test_many_keys_with_different_minutes_stay_within_the_clause_budget() -> None:
    # a backlog's range: hundreds of sensors, each with its own gaps, so no clause is shared
    windows = [w for k in range(400) for w in _minutes(f"s{k}", [k * 60, k * 60 + 180])]
    chunks = list(_query_chunks(windows))
    assert len(chunks) > 1
    assert all(sum(clause_cost(clause) for clause in c) <= CLAUSE_BUDGET for c in chunks)
    owners = [set(_members(c, windows).values()) for c in chunks]
    assert sum(len(o) for o in owners) == len(windows)


@pytest.mark.parametrize(
    "chunk",
    [
        [("sensor", ["a"], [(0, 60)]), ("sensor", ["b"], [(120, 180)])],
        [("sensor", ["a"], [(0, 60), (120, 180), (240, 300)])],
        [("district", ["x", "y", "z"], [(0, 60)])],
    ],
)
def test_a_refused_query_splits_into_halves_that_cover_it_once(
    chunk: list[tuple[str, list[str], list[tuple[int, int]]]],
) -> None:
    def covered(c: list[tuple[str, list[str], list[tuple[int, int]]]]) -> list[tuple[str, int]]:
        return [(k, a) for _, keys, runs in c for k in keys for a, _ in runs]

    first, second = _halves(chunk)
    assert first
    assert second
    assert sorted(covered(first) + covered(second)) == sorted(covered(chunk))


class _StrictEngine:
    """A store whose engine refuses any query naming more than `limit` time ranges, as a
    node counting clauses differently would; it answers the others with no bucket."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.asked: list[tuple[int, int]] = []

    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        text = json.dumps(body)
        ranges = re.findall(r'"gte": (\d+), "lt": (\d+)', text)
        if len(ranges) > self.limit:
            raise TransientStoreError("OpenSearch answered 500: too_many_nested_clauses")
        if '"flags"' not in text:
            self.asked += [(int(a) // 1000, int(b) // 1000) for a, b in ranges]
        return {"aggregations": {"w": {"buckets": []}}}


def test_a_query_the_engine_refuses_for_its_clauses_is_asked_again_in_halves() -> None:
    scattered = _minutes("a", [i * 120 for i in range(40)])
    engine = _StrictEngine(limit=7)
    assert collect_minutes(engine, "p", scattered) == {}  # type: ignore[arg-type]
    assert sorted(engine.asked) == [(i * 120, i * 120 + 60) for i in range(40)]


def test_any_other_refusal_is_raised() -> None:
    class Broken(_StrictEngine):
        def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
            raise TransientStoreError("OpenSearch answered 503: unavailable")

    with pytest.raises(TransientStoreError):
        collect_minutes(Broken(limit=0), "p", _minutes("a", [0, 120]))  # type: ignore[arg-type]


def test_cross_metric_partners_are_looked_for_in_the_readings_own_slots_only() -> None:
    day_apart = [0.0, 4.9, 5.0, 86400.0 * 2 + 1]  # one reading two days after the others
    assert slot_runs(day_apart, 5.0) == ((0, 2), (34560, 34561))
