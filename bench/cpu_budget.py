"""Where the machine's CPU goes: seconds of CPU per process group over a measured stretch,
per reading, and the throughput that budget allows on this machine's cores.

A benchmark names its process groups by pid (a stack service's pid from supervisord, a worker
it started itself); each group counts the process and all its descendants, those still alive
and those already reaped (the kernel adds a reaped child's CPU to its parent), so short-lived
task processes are counted too. Whatever no group names (the benchmark itself, the shell) is
left out: the sum is a lower bound of what the pipeline needs.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psutil

from iot_pipeline.stack.supervisor import ALIVE_STATES, Supervisor


@contextmanager
def simulator_stopped(supervisor: Supervisor) -> Iterator[None]:
    """The live simulator stopped while a benchmark measures (started again after, when it
    ran): the engine's and the worker's work on live readings would otherwise be counted as
    the benchmark's, and more of it the longer a measured side runs."""
    # STARTING too: right after `make up` the simulator is not RUNNING yet, and would produce
    # all through the bench
    was_running = supervisor.state("generator") in ALIVE_STATES
    if was_running:
        supervisor.stop("generator")
    try:
        yield
    finally:
        if was_running:
            supervisor.start("generator")


def _tree_seconds(pid: int) -> float:
    """CPU seconds of a process and its descendants, alive or reaped; 0 when it is gone."""
    try:
        top = psutil.Process(pid)
        family = [top, *top.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in family:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue  # exited meanwhile: its parent will have it once it is reaped
        total += times.user + times.system + times.children_user + times.children_system
    return total


@dataclass(frozen=True)
class Sample:
    seconds: dict[str, float]


class CpuMeter:
    """CPU seconds of named process groups between two samples."""

    def __init__(self, groups: Mapping[str, Sequence[int]]) -> None:
        self.groups = {name: [p for p in pids if p] for name, pids in groups.items()}

    def sample(self) -> Sample:
        return Sample(
            {name: sum(_tree_seconds(p) for p in pids) for name, pids in self.groups.items()}
        )

    def between(self, first: Sample, last: Sample) -> dict[str, float]:
        return {name: max(0.0, last.seconds[name] - first.seconds[name]) for name in self.groups}


# The native stack's services by what they do (`make up`).
STACK_GROUPS = {
    "Celery worker (read, clean, index, aggregate)": ("worker",),
    "search engine": ("opensearch",),
    "Kafka broker": ("kafka",),
    "Airflow (scheduler, API, DAG processor, triggerer)": (
        "airflow-scheduler",
        "airflow-api",
        "airflow-dag-processor",
        "airflow-triggerer",
    ),
    "Redis": ("redis",),
    "REST API": ("api",),
}


def stack_groups(supervisor: Supervisor) -> dict[str, list[int]]:
    """Process groups of the native stack's running services."""
    return {
        group: [supervisor.pid(service) for service in services]
        for group, services in STACK_GROUPS.items()
    }


def budget_rows(spent: Mapping[str, float], readings: int, goal: float) -> list[str]:
    """The table's lines: µs of CPU per reading by group, the total, the readings/s that
    total allows on this machine's cores, and the cores the goal rate would need."""
    cores = os.cpu_count() or 1
    per = {name: seconds / max(1, readings) * 1e6 for name, seconds in spent.items()}
    total = sum(per.values())
    lines = [f"{'CPU per reading':<52} {'µs':>9} {'share':>7}"]
    for name, micros in sorted(per.items(), key=lambda item: -item[1]):
        lines.append(f"  {name:<50} {micros:>9.1f} {micros / max(total, 1e-9):>7.0%}")
    lines.append(f"  {'total':<50} {total:>9.1f}")
    if total > 0:
        lines.append(
            f"{'readings/s that CPU allows on ' + str(cores) + ' cores':<52} "
            f"{cores * 1e6 / total:>9,.0f}  (every core busy, nothing else running)"
        )
        lines.append(
            f"{'cores needed at ' + f'{goal:,.0f}' + '/s':<52} {total * goal / 1e6:>9.2f}  "
            f"(this machine has {cores})"
        )
    return lines


# The search node's own account of its busy time (ms, summed over its threads), by activity.
ENGINE_ACTIVITIES = {
    "indexing": ("indexing", "index_time_in_millis"),
    "refresh": ("refresh", "total_time_in_millis"),
    "merges": ("merges", "total_time_in_millis"),
    "search: query": ("search", "query_time_in_millis"),
    "search: fetch": ("search", "fetch_time_in_millis"),
    "get (by id)": ("get", "time_in_millis"),
    "flush": ("flush", "total_time_in_millis"),
}


def engine_activity(search_url: str) -> dict[str, float]:
    """The node's cumulative milliseconds per activity (_nodes/stats/indices)."""
    with urllib.request.urlopen(f"{search_url}/_nodes/_local/stats/indices", timeout=30) as r:  # noqa: S310 - loopback, from settings
        node = next(iter(json.loads(r.read())["nodes"].values()))
    indices = node["indices"]
    return {name: float(indices[a][b]) for name, (a, b) in ENGINE_ACTIVITIES.items()}


def activity_rows(
    first: Mapping[str, float], last: Mapping[str, float], readings: int
) -> list[str]:
    """The engine's busy time per reading by activity, between two samples."""
    spent = {name: (last[name] - first[name]) * 1e3 / max(1, readings) for name in first}
    total = sum(spent.values())
    lines = [f"{'search engine busy time per reading':<52} {'µs':>9} {'share':>7}"]
    for name, micros in sorted(spent.items(), key=lambda item: -item[1]):
        lines.append(f"  {name:<50} {micros:>9.1f} {micros / max(total, 1e-9):>7.0%}")
    return lines


# What the pipeline writes, by the family of index it writes to (the part of an index name
# after the pipeline's prefix), in the order the table prints them.
DOCUMENT_FAMILIES = (
    ("readings", "-readings-"),
    ("windows 1m", "-agg-1m-"),
    ("windows 1h", "-agg-1h-"),
    ("windows 1d", "-agg-1d-"),
    ("sensor registry", "-sensors"),
)


def documents_written(search_url: str, prefix: str) -> dict[str, int]:
    """Index and update operations the node counted so far on the pipeline's indices (those
    named `prefix-...`), by family; `other` for the rest (dead letters' marks, overrides)."""
    url = f"{search_url}/{prefix}-*/_stats/indexing"
    with urllib.request.urlopen(url, timeout=30) as r:  # noqa: S310 - loopback, from settings
        indices = json.loads(r.read()).get("indices", {})
    counts: dict[str, int] = {name: 0 for name, _ in DOCUMENT_FAMILIES} | {"other": 0}
    for index, stats in indices.items():
        rest = index[len(prefix) :]
        family = next((name for name, part in DOCUMENT_FAMILIES if rest.startswith(part)), "other")
        counts[family] += int(stats["total"]["indexing"]["index_total"])
    return counts


def documents_rows(
    before: Mapping[str, int], after: Mapping[str, int], readings: int, title: str
) -> list[str]:
    """Documents written (created, rewritten or updated) per reading, by family."""
    lines = [f"{title:<52} {'per reading':>11}"]
    total = 0.0
    for name in after:
        per = (after[name] - before.get(name, 0)) / max(1, readings)
        total += per
        lines.append(f"  {name:<50} {per:>11.3f}")
    lines.append(f"  {'total':<50} {total:>11.3f}")
    return lines
