"""The pipeline section of `make status`: lag and stalls per partition, failed runs, quarantines,
the work across partitions waiting for a settle."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from iot_pipeline.contracts.probes import port_open
from iot_pipeline.contracts.run_state import RunState, partition_health, settle_stalled
from iot_pipeline.errors import OffsetsError
from iot_pipeline.settings import StackSettings

QUARANTINES_SHOWN = 3
ERROR_WIDTH = 70


@dataclass(frozen=True)
class PipelineReport:
    """What `make status` knows about the ETL; a source that did not answer is None."""

    topic: str
    group: str
    stall_after: float
    lags: dict[int, int] | None
    state: RunState | None
    kafka_error: str = ""
    redis_error: str = ""

    def stalled(self, now: float) -> bool:
        """A partition stalled, or the search engine refusing the pipeline's writes."""
        if self.state is not None and self.state.refusal is not None:
            return True
        if self.state is not None and settle_stalled(self.state, self.stall_after, now):
            return True
        if self.lags is None or self.state is None:
            return False
        return any(
            h.stalled for h in partition_health(self.state, self.lags, self.stall_after, now)
        )


def _lags(settings: StackSettings) -> tuple[dict[int, int] | None, str]:
    from iot_pipeline.contracts.positions import positions

    host, port = settings.kafka_bootstrap
    if not port_open(host, port):  # else the client waits for its metadata timeout
        return None, f"nothing listening on {host}:{port}"
    try:
        group = positions(settings, settings.kafka_sensor_data_topic, settings.etl_consumer_group)
    except OffsetsError as exc:
        return None, str(exc)
    return {p.partition: p.lag for p in group}, ""


def _state(settings: StackSettings) -> tuple[RunState | None, str]:
    import redis

    from iot_pipeline.contracts.run_state import read_state

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        state = read_state(
            client,
            settings.search_index_prefix,
            settings.kafka_sensor_data_topic,
            recent=QUARANTINES_SHOWN,
        )
    except redis.RedisError as exc:
        return None, str(exc)
    finally:
        client.close()
    return state, ""


def gather(settings: StackSettings) -> PipelineReport:
    """Read the lag from Kafka and the run state from Redis; an outage is reported, not raised."""
    lags, kafka_error = _lags(settings)
    state, redis_error = _state(settings)
    return PipelineReport(
        topic=settings.kafka_sensor_data_topic,
        group=settings.etl_consumer_group,
        stall_after=settings.etl_stall_seconds,
        lags=lags,
        state=state,
        kafka_error=kafka_error,
        redis_error=redis_error,
    )


def age(seconds: float) -> str:
    """A duration as its two largest units: 42s, 7m05s, 3h02m, 2d03h."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _short(error: str) -> str:
    line = error.strip().splitlines()[0] if error.strip() else ""
    return line if len(line) <= ERROR_WIDTH else line[: ERROR_WIDTH - 3] + "..."


def _partition_lines(report: PipelineReport, now: float) -> list[str]:
    state = report.state or RunState()
    lags = report.lags or {}
    health = {h.partition: h for h in partition_health(state, lags, report.stall_after, now)}
    partitions = sorted(set(lags) | set(state.last_commit))
    lines = [f"  {'partition':<10} {'lag':>9}  last commit"] if partitions else []
    for partition in partitions:
        at = state.last_commit.get(partition)
        lag = str(lags[partition]) if partition in lags else "?"
        when = "never" if at is None else f"{age(now - at)} ago"
        if report.state is None:
            when = "?"
        mark = "  STALLED" if partition in health and health[partition].stalled else ""
        lines.append(f"  {partition:<10} {lag:>9}  {when}{mark}")
    return lines


def render(report: PipelineReport, now: float | None = None) -> list[str]:
    """The section's lines (a pure function of the report, for tests)."""
    now = time.time() if now is None else now
    total = "?" if report.lags is None else str(sum(report.lags.values()))
    lines = [
        f"pipeline    {report.topic} (group {report.group}): total lag {total}, "
        f"stall age {report.stall_after:.0f}s" + ("  STALLED" if report.stalled(now) else "")
    ]
    if report.lags is None:
        lines.append(f"  kafka DOWN ({report.kafka_error}): lag unknown")
    if report.state is None:
        lines.append(f"  redis DOWN ({report.redis_error}): run state unknown")
    lines += _partition_lines(report, now)
    state = report.state
    if state is None:
        return lines
    lines.append(
        f"  failed runs in a row {state.consecutive_failed_runs}, "
        f"failing ranges {len(state.failing)}, quarantined {state.quarantined_ranges} "
        f"ranges ({state.quarantined_records} records)"
    )
    if state.lost_records or state.topic_recreations:
        lines.append(
            f"  LOST: {state.lost_records} records deleted by Kafka retention before processing; "
            f"topic recreated {state.topic_recreations} times"
        )
    if state.refusal is not None:
        since = datetime.fromtimestamp(state.refusal.since, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        lines.append(
            f"  REFUSED: the search engine refuses the pipeline's writes since {since} "
            f"({len(state.refusal.ranges)} ranges held, nothing dead-lettered):"
        )
        lines.append(f"    {state.refusal.error[:300]}")
    if state.settle_failure is not None:
        failure = state.settle_failure
        since = datetime.fromtimestamp(failure.since, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        lines.append(
            f"  SETTLE FAILING since {since}: {state.across_waiting} district windows and "
            f"buddy slots wait for the next settle:"
        )
        lines.append(f"    {failure.error[:300]}")
    elif state.across_waiting:
        lines.append(f"  across partitions: {state.across_waiting} waiting for this run's settle")
    for q in state.quarantines[:QUARANTINES_SHOWN]:
        moment = datetime.fromtimestamp(q.at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        lines.append(f"    {moment}  {q.range}  {_short(q.error)}")
    return lines
