"""Stall detection, the run state's parsing, the pipeline metrics and `make status`'s pipeline
section: pure logic on hand-made run states (the real Redis and Kafka are integration tests)."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from iot_pipeline.api.pipeline_metrics import exposition, families
from iot_pipeline.contracts.run_state import (
    PartitionHealth,
    Quarantine,
    RangeFailure,
    Refusal,
    RunState,
    SettleFailure,
    parse_state,
    partition_health,
    settle_stalled,
)
from iot_pipeline.stack.pipeline_report import PipelineReport, age, render

NOW = 1_800_000_000.0
QUARANTINE = Quarantine(
    range="t[2]:10-20",
    topic="t",
    partition=2,
    start=10,
    end=20,
    records=10,
    attempts=3,
    error="TimeoutError: worker lost\nTraceback (most recent call last): ...",
    batch_id="b-1",
    at=NOW - 30,
)


def _state(**changes: object) -> RunState:
    base: dict[str, object] = {
        "last_commit": {0: NOW - 5, 1: NOW - 400, 2: NOW - 400},
        "consecutive_failed_runs": 2,
        "quarantined_ranges": 1,
        "quarantined_records": 10,
        "quarantines": [QUARANTINE],
        "failing": {"t:1:5": RangeFailure(2, "boom", NOW - 100, NOW - 200)},
    }
    return RunState(**(base | changes))  # type: ignore[arg-type]


def test_a_partition_stalls_only_with_lag_and_an_old_commit() -> None:
    health = partition_health(_state(), {0: 7, 1: 3, 2: 0, 3: 9}, stall_after=300, now=NOW)
    assert health == [
        PartitionHealth(0, 7, 5.0, False),  # lag, but committed recently
        PartitionHealth(1, 3, 400.0, True),
        PartitionHealth(2, 0, 400.0, False),  # old, but nothing to do
        PartitionHealth(3, 9, None, False),  # never seen by the ETL: no clock yet
    ]


def test_the_stall_age_itself_is_not_a_stall_and_clocks_never_run_backwards() -> None:
    state = _state(last_commit={0: NOW - 300, 1: NOW + 5})
    health = partition_health(state, {0: 1, 1: 1}, stall_after=300, now=NOW)
    assert [(h.last_commit_age, h.stalled) for h in health] == [(300.0, False), (0.0, False)]


def test_parse_state_reads_redis_answers_for_its_topic() -> None:
    state = parse_state(
        {
            b"t:0": json.dumps({"offset": 12, "at": NOW}).encode(),
            "t:1": json.dumps({"offset": 3, "at": NOW - 9}),
            b"other:0": json.dumps({"offset": 99, "at": NOW}).encode(),
            b"t.dlq:0": json.dumps({"offset": 1, "at": NOW}).encode(),
        },
        {
            b"t:1:3": json.dumps({"count": 2, "error": "e", "at": NOW, "since": NOW - 60}),
            b"t:0:0": json.dumps({"count": 1, "error": "old entry", "at": NOW - 1}),
        },
        b"4",
        None,
        b"25",
        [json.dumps(QUARANTINE.as_dict()).encode()],
        topic="t",
    )
    assert state.last_commit == {0: NOW, 1: NOW - 9}
    assert state.committed_offset == {0: 12, 1: 3}
    assert state.failing == {
        "t:1:3": RangeFailure(2, "e", NOW, NOW - 60),
        "t:0:0": RangeFailure(1, "old entry", NOW - 1, None),
    }
    assert (state.consecutive_failed_runs, state.quarantined_ranges) == (4, 0)
    assert state.quarantined_records == 25
    assert state.quarantines == [QUARANTINE]


def test_parse_state_of_nothing_is_a_clean_state() -> None:
    assert parse_state({}, {}, None, None, None, [], topic="t") == RunState()


def _samples(metrics: bytes) -> dict[tuple[str, str], float]:
    return {
        (s.name, ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.decode())
        for s in family.samples
    }


def test_metrics_of_a_stalled_pipeline() -> None:
    samples = _samples(exposition(families(_state(), {0: 7, 1: 3}, 300, NOW)))
    assert samples == {
        ("iot_pipeline_source_up", "source=redis"): 1,
        ("iot_pipeline_source_up", "source=kafka"): 1,
        ("iot_pipeline_partition_lag", "partition=0"): 7,
        ("iot_pipeline_partition_lag", "partition=1"): 3,
        ("iot_pipeline_quarantined_ranges_total", ""): 1,
        ("iot_pipeline_quarantined_records_total", ""): 10,
        ("iot_pipeline_consecutive_failed_runs", ""): 2,
        ("iot_pipeline_partition_last_commit_age_seconds", "partition=0"): 5,
        ("iot_pipeline_partition_last_commit_age_seconds", "partition=1"): 400,
        ("iot_pipeline_partition_last_commit_age_seconds", "partition=2"): 400,
        ("iot_pipeline_store_refusing", ""): 0,
        ("iot_pipeline_lost_records_total", ""): 0,
        ("iot_pipeline_topic_recreations_total", ""): 0,
        ("iot_pipeline_across_partitions_waiting", ""): 0,
        ("iot_pipeline_settle_failing_seconds", ""): 0,
        ("iot_pipeline_stalled", ""): 1,
    }


def test_metrics_leave_out_what_a_down_source_would_tell() -> None:
    without_kafka = _samples(exposition(families(_state(), None, 300, NOW)))
    assert without_kafka[("iot_pipeline_source_up", "source=kafka")] == 0
    names = {name for name, _ in without_kafka}
    assert "iot_pipeline_partition_lag" not in names
    assert "iot_pipeline_stalled" not in names
    without_redis = _samples(exposition(families(None, {0: 7}, 300, NOW)))
    assert without_redis == {
        ("iot_pipeline_source_up", "source=redis"): 0,
        ("iot_pipeline_source_up", "source=kafka"): 1,
        ("iot_pipeline_partition_lag", "partition=0"): 7,
    }


def _report(**changes: object) -> PipelineReport:
    base: dict[str, object] = {
        "topic": "t",
        "group": "g",
        "stall_after": 300,
        "lags": {0: 7, 1: 3, 2: 0, 3: 9},
        "state": _state(),
    }
    return PipelineReport(**(base | changes))  # type: ignore[arg-type]


def test_status_section_of_a_stalled_pipeline() -> None:
    report = _report()
    assert report.stalled(NOW)
    assert render(report, NOW) == [
        "pipeline    t (group g): total lag 19, stall age 300s  STALLED",
        "  partition        lag  last commit",
        "  0                  7  5s ago",
        "  1                  3  6m40s ago  STALLED",
        "  2                  0  6m40s ago",
        "  3                  9  never",
        "  failed runs in a row 2, failing ranges 1, quarantined 1 ranges (10 records)",
        "    2027-01-15 07:59:30Z  t[2]:10-20  TimeoutError: worker lost",
    ]


def test_status_section_with_kafka_or_redis_down() -> None:
    no_kafka = _report(lags=None, kafka_error="nothing listening on 127.0.0.1:9092")
    assert not no_kafka.stalled(NOW)
    lines = render(no_kafka, NOW)
    assert lines[0] == "pipeline    t (group g): total lag ?, stall age 300s"
    assert lines[1] == "  kafka DOWN (nothing listening on 127.0.0.1:9092): lag unknown"
    assert lines[3] == "  0                  ?  5s ago"
    no_redis = _report(state=None, redis_error="Connection refused")
    assert not no_redis.stalled(NOW)
    lines = render(no_redis, NOW)
    assert lines[1] == "  redis DOWN (Connection refused): run state unknown"
    assert lines[3] == "  0                  7  ?"
    assert len(lines) == 7  # no run state: no failed runs or quarantines line
    both = render(_report(lags=None, state=None, kafka_error="a", redis_error="b"), NOW)
    assert len(both) == 3


REFUSAL = (
    "429 cluster_block_exception: index [iot-readings-2027.01.15] blocked by: "
    "[TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has "
    "read-only-allow-delete block]; (40 of 40 documents refused)"
)


def test_a_refusal_of_the_engine_is_read_shown_and_counted_as_a_stall() -> None:
    """A write block stalls the pipeline at once (not after the stall age): `make status`
    exits 3 and names the cause, the metrics say so."""
    raw = json.dumps({"error": REFUSAL, "ranges": ["t[0]:0-40"], "at": NOW, "since": NOW - 90})
    state = parse_state({}, {}, None, None, None, [], topic="t", refusal=raw.encode())
    assert state.refusal == Refusal(REFUSAL, ["t[0]:0-40"], NOW, NOW - 90)
    report = _report(lags={0: 40}, state=state)
    assert report.stalled(NOW)  # no partition is stalled yet
    lines = render(report, NOW)
    assert lines[-2].startswith(
        "  REFUSED: the search engine refuses the pipeline's writes since 2027-01-15 07:58:30Z"
    )
    assert lines[-1] == f"    {REFUSAL}"
    samples = _samples(exposition(families(state, {0: 40}, 300, NOW)))
    assert samples[("iot_pipeline_store_refusing", "")] == 1
    assert samples[("iot_pipeline_stalled", "")] == 0


def test_a_failing_settle_is_read_shown_and_a_stall_after_the_stall_age() -> None:
    """Settles across partitions that keep failing leave district windows and buddy verdicts
    behind the stored readings: `make status` names it and what waits, the metrics count
    its age, and past the stall age it is a stall (a single failed run is not)."""
    raw = json.dumps({"error": "StoreRefused: blocked", "at": NOW, "since": NOW - 400})
    state = parse_state(
        {}, {}, None, None, None, [], topic="t", settle_failure=raw.encode(), waiting=[7, b"5"]
    )
    assert state.settle_failure == SettleFailure("StoreRefused: blocked", NOW, NOW - 400)
    assert state.across_waiting == 12
    assert settle_stalled(state, 300, NOW)
    assert not settle_stalled(state, 600, NOW)
    report = _report(lags={0: 0}, state=state)
    assert report.stalled(NOW)
    lines = render(report, NOW)
    assert lines[-2] == (
        "  SETTLE FAILING since 2027-01-15 07:53:20Z: 12 district windows and buddy slots "
        "wait for the next settle:"
    )
    assert lines[-1] == "    StoreRefused: blocked"
    samples = _samples(exposition(families(state, {0: 0}, 300, NOW)))
    assert samples[("iot_pipeline_settle_failing_seconds", "")] == 400
    assert samples[("iot_pipeline_across_partitions_waiting", "")] == 12
    # work waiting while the run settles is no stall, only a line
    calm = parse_state({}, {}, None, None, None, [], topic="t", waiting=[3, 0, 0, 0])
    assert not _report(lags={0: 0}, state=calm).stalled(NOW)
    assert render(_report(lags={0: 0}, state=calm), NOW)[-1] == (
        "  across partitions: 3 waiting for this run's settle"
    )


def test_records_lost_to_retention_are_counted_once_per_gap_of_their_topic() -> None:
    gap = json.dumps({"to": 900, "count": 400, "at": NOW}).encode()
    other = json.dumps({"to": 50, "count": 50, "at": NOW}).encode()
    state = parse_state(
        {},
        {},
        None,
        None,
        None,
        [],
        topic="t.x",
        lost={b"t.x:3:500": gap, b"t.x:1:0": other, b"t.x.dlq:0:0": other},
        recreations=b"1",
    )
    assert (state.lost_records, state.topic_recreations) == (450, 1)
    lines = render(_report(state=state), NOW)
    assert (
        "  LOST: 450 records deleted by Kafka retention before processing; topic recreated 1 times"
        in lines
    )
    samples = _samples(exposition(families(state, {0: 0}, 300, NOW)))
    assert samples[("iot_pipeline_lost_records_total", "")] == 450


def test_ages_read_in_their_two_largest_units() -> None:
    assert [age(s) for s in (0, 42.9, 60, 425, 3600, 11_000, 86_400 * 2 + 3 * 3600)] == [
        "0s",
        "42s",
        "1m00s",
        "7m05s",
        "1h00m",
        "3h03m",
        "2d03h",
    ]
