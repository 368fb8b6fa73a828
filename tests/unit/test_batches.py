"""The orchestrator's side of a batch, against a stand-in for Celery: ranges of a partition in
order, partitions isolated, short ranges continued, timeouts revoked, quarantine accounting."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from iot_pipeline.contracts.ranges import OffsetRange, RangeTask
from iot_pipeline.orchestration.batches import range_tasks, run_tasks
from iot_pipeline.orchestration.etl import _extend, verdict

NOW = datetime(2026, 11, 28, tzinfo=UTC)


class _Result:
    def __init__(self, outcome: Any, ready: bool = True) -> None:
        self._outcome, self._ready = outcome, ready
        self.state = "SUCCESS" if ready and not isinstance(outcome, Exception) else "PENDING"

    def ready(self) -> bool:
        return self._ready

    def successful(self) -> bool:
        return not isinstance(self._outcome, Exception)

    @property
    def result(self) -> Any:
        return self._outcome

    def get(self) -> Any:
        return self._outcome


class _App:
    """Runs each sent range at once through `work(task) -> report | Exception | None`
    (None: never finishes)."""

    def __init__(self, work: Any) -> None:
        self.work = work
        self.sent: list[RangeTask] = []
        self.revoked: list[str] = []
        self.results: dict[str, _Result] = {}
        self.control = self

    def AsyncResult(self, task_id: str) -> _Result:
        return self.results.get(task_id, _Result(None, ready=False))

    def send_task(self, name: str, args: list[Any], task_id: str, queue: str) -> _Result:
        task = RangeTask.model_validate(args[0])
        self.sent.append(task)
        outcome = self.work(task)
        result = _Result(outcome, ready=outcome is not None)
        self.results[task_id] = result
        return result

    def revoke(self, task_id: str) -> None:
        self.revoked.append(task_id)


def _ranges(*spans: tuple[int, int, int]) -> list[OffsetRange]:
    return [OffsetRange(topic="t", partition=p, start=a, end=b) for p, a, b in spans]


def _report(task: RangeTask, end: int | None = None) -> dict[str, Any]:
    r = task.range
    return {
        "batch_id": task.batch_id,
        "range": str(r),
        "end": r.end if end is None else end,
        "records": r.size,
    }


def test_partitions_run_in_order_and_a_failure_stops_only_its_own() -> None:
    def work(task: RangeTask) -> Any:
        if task.range.partition == 1 and task.range.start == 100:
            return RuntimeError("boom")
        return _report(task)

    app = _App(work)
    tasks = range_tasks(
        "b", NOW, _ranges((0, 0, 100), (0, 100, 200), (1, 0, 100), (1, 100, 200), (1, 200, 300))
    )
    summary = run_tasks(app, tasks, timeout=60, poll=0)  # type: ignore[arg-type]
    assert [(t.range.partition, t.range.start) for t in app.sent if t.range.partition == 1] == [
        (1, 0),
        (1, 100),
    ]  # nothing after the failed range of its partition
    assert summary.done == _ranges((0, 0, 200), (1, 0, 100))
    assert [(f.range.partition, f.range.start) for f in summary.failures] == [(1, 100)]
    assert "RuntimeError: boom" in summary.failures[0].error


def test_a_range_cut_short_by_bytes_is_continued_in_the_same_batch() -> None:
    app = _App(lambda task: _report(task, end=min(task.range.end, task.range.start + 40)))
    summary = run_tasks(app, range_tasks("b", NOW, _ranges((3, 0, 100))), timeout=60, poll=0)  # type: ignore[arg-type]
    assert [(t.range.start, t.range.end) for t in app.sent] == [(0, 100), (40, 100), (80, 100)]
    assert summary.done == _ranges((3, 0, 100))


def test_what_is_not_done_in_time_is_revoked_and_counted_as_failed() -> None:
    app = _App(lambda task: None if task.range.partition == 2 else _report(task))
    tasks = range_tasks("b", NOW, _ranges((0, 0, 10), (2, 5, 10)))
    summary = run_tasks(app, tasks, timeout=0, poll=0)  # type: ignore[arg-type]
    assert app.revoked == [tasks[1].task_id]
    assert [f.range.partition for f in summary.failures] == [2]
    assert "Timeout" in summary.failures[0].error


def test_a_retried_orchestrator_reuses_ranges_that_already_succeeded() -> None:
    app = _App(_report)
    tasks = range_tasks("b", NOW, _ranges((0, 0, 10)))
    run_tasks(app, tasks, timeout=60, poll=0)  # type: ignore[arg-type]
    again = run_tasks(app, tasks, timeout=60, poll=0)  # type: ignore[arg-type]
    assert len(app.sent) == 1
    assert again.done == _ranges((0, 0, 10))


def test_task_ids_are_deterministic_per_batch_and_range() -> None:
    (a,) = range_tasks("b1", NOW, _ranges((0, 0, 10)))
    (b,) = range_tasks("b1", NOW, _ranges((0, 0, 10)))
    (c,) = range_tasks("b2", NOW, _ranges((0, 0, 10)))
    assert a.task_id == b.task_id != c.task_id


def test_a_quarantined_range_joins_its_partitions_committable_range() -> None:
    done = _ranges((0, 0, 100), (1, 0, 50))
    assert _extend(done, _ranges((1, 50, 90))[0]) == _ranges((0, 0, 100), (1, 0, 90))
    assert _extend(done, _ranges((2, 10, 20))[0]) == _ranges((0, 0, 100), (1, 0, 50), (2, 10, 20))


def test_the_verdict_fails_the_run_with_the_reason() -> None:
    from iot_pipeline.orchestration.handoffs import RunReport

    ok = RunReport(batch_id="b", partitions_committed=6)
    assert verdict(ok) == "ok: 6 partitions committed"
    bad = RunReport(
        batch_id="b",
        failed_ranges=["t[4]:0-10: InjectedFault: x"],
        quarantined_ranges=["t[4]:0-10 (10 records)"],
        partitions_committed=6,
    )
    with pytest.raises(Exception, match=r"1 ranges failed \(1 quarantined: t\[4\]:0-10"):
        verdict(bad)


def test_a_failing_range_is_narrowed_to_the_records_that_fail() -> None:
    from iot_pipeline.contracts.reports import BatchSummary, RangeFailure
    from iot_pipeline.orchestration.batches import narrow_failure

    poison = {37, 80}

    def work(task: RangeTask) -> Any:
        r = task.range
        if any(r.start <= p < r.end for p in poison):
            return ValueError("poison")
        return _report(task)

    app = _App(work)
    summary = BatchSummary(batch_id="b")
    failed = RangeFailure(range=_ranges((4, 0, 100))[0], error="ValueError: poison")
    culprits = narrow_failure(app, failed, "b", NOW, 60, summary)  # type: ignore[arg-type]
    assert [(c.range.start, c.range.end) for c in culprits] == [(37, 38), (80, 81)]
    succeeded = [t.range for t in app.sent if not isinstance(work(t), Exception)]
    processed = sorted(o for r in succeeded for o in range(r.start, r.end))
    assert processed == sorted(set(range(100)) - poison)  # every other record, once
    assert summary.records == 98


def test_a_range_no_record_is_to_blame_for_is_not_bisected() -> None:
    """Timed out, refused by the engine, a dependency down: halves would fail as well, and
    quarantining them would dead-letter good readings."""
    from iot_pipeline.contracts.reports import (
        REFUSED,
        TIMED_OUT,
        UNAVAILABLE,
        BatchSummary,
        RangeFailure,
    )
    from iot_pipeline.orchestration.batches import narrow_failure

    app = _App(_report)
    for kind in (TIMED_OUT, REFUSED, UNAVAILABLE):
        failed = RangeFailure(
            range=_ranges((0, 0, 100))[0], error="Timeout: not done after 900s", kind=kind
        )
        assert not failed.records_to_blame
        assert narrow_failure(app, failed, "b", NOW, 60, BatchSummary(batch_id="b")) == [failed]  # type: ignore[arg-type]
    assert app.sent == []


def test_a_replay_is_narrowed_on_the_replay_queue_as_a_replay() -> None:
    from iot_pipeline.contracts.reports import BatchSummary, RangeFailure
    from iot_pipeline.orchestration.batches import narrow_failure

    queues: list[str] = []
    app = _App(lambda t: ValueError("poison") if t.range.start <= 3 < t.range.end else _report(t))
    send = app.send_task

    def on_queue(name: str, args: list[Any], task_id: str, queue: str) -> _Result:
        queues.append(queue)
        return send(name, args, task_id, queue)

    app.send_task = on_queue  # type: ignore[method-assign]
    failed = RangeFailure(range=_ranges((0, 0, 8))[0], error="ValueError: poison")
    culprits = narrow_failure(app, failed, "b", NOW, 60, BatchSummary(batch_id="b"), True, "replay")  # type: ignore[arg-type]
    assert [(c.range.start, c.range.end) for c in culprits] == [(3, 4)]
    assert all(t.replay for t in app.sent)
    assert set(queues) == {"replay"}


def test_a_half_refused_by_the_engine_stops_the_bisection_unquarantined() -> None:
    from iot_pipeline.contracts.reports import FAILED, REFUSED, BatchSummary, RangeFailure
    from iot_pipeline.errors import StoreRefused
    from iot_pipeline.orchestration.batches import narrow_failure

    def work(task: RangeTask) -> Any:
        if task.range.start >= 50:
            return StoreRefused("403 cluster_block_exception: index write (api)")
        return ValueError("poison") if task.range.start <= 10 < task.range.end else _report(task)

    app = _App(work)
    failed = RangeFailure(range=_ranges((0, 0, 100))[0], error="ValueError: poison", kind=FAILED)
    culprits = narrow_failure(app, failed, "b", NOW, 60, BatchSummary(batch_id="b"))  # type: ignore[arg-type]
    assert [(c.range.start, c.range.end, c.kind) for c in culprits] == [
        (10, 11, FAILED),
        (50, 100, REFUSED),
    ]


def test_unexpected_errors_reach_the_orchestrator_by_name() -> None:
    from iot_pipeline.errors import RangeFailed
    from iot_pipeline.worker.tasks import process_range_task

    with pytest.raises(RangeFailed, match=r"^ValidationError: \d+ validation error"):
        process_range_task({"batch_id": ""})


def test_after_the_run_budget_no_range_starts_and_each_partition_keeps_what_it_did() -> None:
    app = _App(_report)
    tasks = range_tasks("b", NOW, _ranges((0, 0, 100), (0, 100, 200), (1, 0, 100)))
    summary = run_tasks(app, tasks, timeout=5, poll=0, budget=0)  # type: ignore[arg-type]
    assert [str(t.range) for t in app.sent] == ["t[0]:0-100", "t[1]:0-100"]
    assert [(d.partition, d.end) for d in summary.done] == [(0, 100), (1, 100)]
    assert summary.failures == []


def test_a_run_plans_the_backlog_as_consecutive_bounded_ranges() -> None:
    from iot_pipeline.orchestration.offsets import split_ranges

    split = split_ranges(_ranges((0, 10, 260), (1, 0, 50)), 100)
    assert [(r.partition, r.start, r.end) for r in split] == [
        (0, 10, 110),
        (0, 110, 210),
        (0, 210, 260),
        (1, 0, 50),
    ]


@pytest.mark.parametrize(
    ("lag", "failed", "expected"),
    [(10_000, [], True), (4_999, [], False), (10_000, ["t[0]:0-5: boom"], False)],
)
def test_only_a_clean_run_with_a_backlog_triggers_the_next_at_once(
    lag: int, failed: list[str], expected: bool
) -> None:
    from iot_pipeline.orchestration.etl import needs_catch_up
    from iot_pipeline.orchestration.handoffs import RunReport
    from iot_pipeline.settings import Settings

    report = RunReport(batch_id="b", failed_ranges=failed, lag_after=lag)
    assert needs_catch_up(Settings(etl_catch_up_min_lag=5000), report) is expected


def test_a_redis_restart_is_waited_out_not_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import redis

    from iot_pipeline.orchestration import batches

    monkeypatch.setattr(time, "sleep", lambda _: None)  # the `time` module batches waits with
    answers: list[object] = [redis.ConnectionError("restarting"), redis.ConnectionError("x"), 7]

    def call() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert batches._patiently(call) == 7
    monkeypatch.setattr(batches, "BROKER_OUTAGE_SECONDS", -1.0)  # an outage that lasts
    answers[:] = [redis.ConnectionError("down for good")]
    with pytest.raises(redis.ConnectionError):
        batches._patiently(call)
