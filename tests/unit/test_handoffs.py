"""What the DAG tasks hand each other: typed, checked, and the same after a trip through XCom's
JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from iot_pipeline.contracts.ranges import OffsetRange
from iot_pipeline.contracts.reports import RENAMED, BatchSummary, RangeCounts, RangeReport
from iot_pipeline.orchestration.handoffs import BatchPlan, ReplayRequest, RunReport


def _via_xcom(payload: dict[str, object]) -> dict[str, object]:
    """What the next task receives: Airflow stores the value as JSON."""
    received: dict[str, object] = json.loads(json.dumps(payload))
    return received


def test_a_plan_comes_back_from_xcom_unchanged() -> None:
    plan = BatchPlan.now("run-1", [OffsetRange(topic="t", partition=2, start=5, end=9)])
    assert plan.ingest_time.tzinfo is not None
    assert BatchPlan.model_validate(_via_xcom(plan.to_xcom())) == plan


def test_a_plan_refuses_what_no_run_could_have_written() -> None:
    good = BatchPlan.now("b", []).to_xcom()
    for broken in (
        {**good, "ingest_time": "2026-11-29T10:00:00"},  # no offset: which clock?
        {**good, "ranges": [{"topic": "t", "partition": 0, "start": 9, "end": 5}]},
        {**good, "batch_id": ""},
        {**good, "surprise": 1},
    ):
        with pytest.raises(ValidationError):
            BatchPlan.model_validate(broken)


def test_a_replay_request_takes_offsets_or_times() -> None:
    by_offsets = ReplayRequest(topic="t", start_offset=10, end_offset=20)
    assert not by_offsets.by_time
    by_time = ReplayRequest.model_validate(
        {"topic": "t", "start_time": "2026-11-28T10:00:00Z", "end_time": "2026-11-28T11:00:00"}
    )
    assert by_time.by_time
    assert by_time.start_time == datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert by_time.end_time == datetime(2026, 11, 28, 11, tzinfo=UTC)  # no offset: UTC
    assert ReplayRequest.model_validate(_via_xcom(by_time.to_xcom())) == by_time


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"start_offset": 1, "start_time": "2026-11-28T10:00:00Z"}, "either offsets or times"),
        ({"start_time": "2026-11-28T10:00:00Z"}, "needs both start_time and end_time"),
        ({"start_time": "yesterday", "end_time": "today"}, "not an ISO 8601 time"),
        ({"start_offset": -1}, "greater than or equal to 0"),
        ({"partition": -2}, "greater than or equal to 0"),
        ({"topic": ""}, "at least 1 character"),
    ],
)
def test_a_replay_request_says_what_is_wrong(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ReplayRequest.model_validate({"topic": "t", **fields})


def test_the_report_says_what_the_summary_counted() -> None:
    plan = BatchPlan.now("b", [])
    summary = BatchSummary.model_validate(
        _via_xcom(
            {
                "batch_id": "b",
                "records": 10,
                "indexed": 8,
                "valid": 7,
                "flagged": 1,
                "duplicates": 1,
                "dead_letters": 2,
                "dead_letters_new": 1,
                "still_dead": 0,
                "retried_items": 4,
                "windows": 12,
                "cross_metric_changes": 3,
                "spatial_changes": 5,
                "done": [{"topic": "t", "partition": 0, "start": 0, "end": 10}],
                "failures": [
                    {"range": {"topic": "t", "partition": 1, "start": 0, "end": 5}, "error": "x"}
                ],
                "quarantined": [{"range": "t[2]:0-3", "records": 3}],
            }
        )
    )
    report = RunReport.of(plan, summary, {0: 0, 1: 5}, consecutive_failed_runs=1)
    assert (report.records_read, report.dead_lettered, report.windows_updated) == (10, 2, 12)
    # every count of the workers reaches the run report, under its own name or RENAMED's
    assert (report.dead_letters_new, report.retried_items) == (1, 4)
    assert (report.cross_metric_changes, report.spatial_changes) == (3, 5)
    assert report.failed_ranges == ["t[1]:0-5: x"]
    assert report.quarantined_ranges == ["t[2]:0-3 (3 records)"]
    assert (report.lag_after, report.partitions_committed, report.clean) == (5, 1, False)
    assert RunReport.model_validate(_via_xcom(report.to_xcom())) == report


def test_a_batch_sums_every_count_of_its_ranges_field_by_field() -> None:
    counts = {name: i + 1 for i, name in enumerate(RangeCounts.model_fields)}
    report = RangeReport.model_validate(
        _via_xcom({"batch_id": "b", "range": "t[0]:0-10", "end": 10, **counts, "newer": 1})
    )
    summary = BatchSummary(batch_id="b")
    summary.add_range(report)
    summary.add_range(report)
    again = BatchSummary.model_validate(_via_xcom(summary.to_xcom()))
    assert again == summary
    assert {n: getattr(again, n) for n in RangeCounts.model_fields} == {
        n: 2 * v for n, v in counts.items()
    }
    assert again.ranges == 2
    assert again.per_range == ["t[0]:0-10: 1 records"] * 2
    # the run report shows each of them, renamed at most once
    fields = RunReport.model_fields
    for name in RangeCounts.model_fields:
        if name != "seconds":
            assert RENAMED.get(name, name) in fields, name


def test_a_range_report_that_is_not_one_is_refused_on_receipt() -> None:
    with pytest.raises(ValidationError, match="records"):
        RangeReport.model_validate({"batch_id": "b", "range": "r", "end": 1, "records": "many"})
    with pytest.raises(ValidationError, match="end"):
        RangeReport.model_validate({"batch_id": "b", "range": "r"})


def test_a_failed_settle_across_partitions_fails_the_run_and_says_why() -> None:
    from iot_pipeline.errors import BatchFailed
    from iot_pipeline.orchestration.etl import verdict

    summary = BatchSummary(batch_id="b", settle_error="StoreRefused: 403 cluster_block")
    received = BatchSummary.model_validate(_via_xcom(summary.to_xcom()))
    assert received.settle_error == summary.settle_error
    assert "settle_error" not in received.totals()
    report = RunReport.of(BatchPlan.now("b", []), received, {}, consecutive_failed_runs=1)
    assert not report.clean
    with pytest.raises(BatchFailed, match=r"settle across partitions failed.*cluster_block"):
        verdict(report)
    settled = RunReport.of(BatchPlan.now("b", []), BatchSummary(batch_id="b"), {}, 0)
    assert settled.clean
    assert verdict(settled).startswith("ok")
