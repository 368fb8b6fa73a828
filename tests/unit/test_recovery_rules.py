"""Which held task messages a starting worker takes back, and which leftovers the launcher
ends (real processes, no stack needed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest

from iot_pipeline.stack import launch
from iot_pipeline.worker.recovery import is_orphan

from support.waiting import eventually

ME = "worker@a"


@pytest.mark.parametrize(
    ("status", "started_by", "live", "orphan"),
    [
        ("SUCCESS", ME, set(), False),  # finished: dropped, never run twice
        ("FAILURE", "worker@gone", {"worker@b"}, False),
        ("STARTED", ME, {"worker@b"}, True),  # an earlier run of this very node
        ("STARTED", "worker@gone", {"worker@b"}, True),
        ("STARTED", "worker@b", {"worker@b"}, False),  # a live worker holds it
        ("PENDING", None, {"worker@b"}, False),  # reserved by someone, maybe alive
        ("PENDING", None, set(), True),  # nobody else is alive
        ("RETRY", "worker@b", set(), True),
    ],
)
def test_only_tasks_of_dead_workers_are_taken_back(
    status: str, started_by: str | None, live: set[str], orphan: bool
) -> None:
    assert is_orphan(status, started_by, ME, live) is orphan


def test_the_launcher_ends_what_a_killed_start_left_and_execs(tmp_path: os.PathLike[str]) -> None:
    marker = os.path.join(tmp_path, "prog.pgid")
    # a "program" that starts a helper in its group, run through the launcher
    program = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iot_pipeline.stack.launch",
            marker,
            "--",
            "sh",
            "-c",
            "sleep 300 & exec sleep 301",
        ],
        start_new_session=True,
    )
    eventually(
        lambda: os.path.exists(marker) and len(_group(program.pid)) >= 2,
        30,
        "the launched program's start",
        interval=0.05,
    )
    assert psutil.Process(program.pid).cmdline()[:2] == ["sleep", "301"]  # exec'd in place
    os.kill(program.pid, signal.SIGKILL)  # the main process dies; its helper lives on
    program.wait(10)
    (helper,) = _group(program.pid)
    assert launch.leftovers(program.pid, psutil.Process(helper).create_time() - 1) != []

    again = subprocess.Popen(
        [sys.executable, "-m", "iot_pipeline.stack.launch", marker, "--", "sleep", "302"],
        start_new_session=True,
    )
    try:
        eventually(  # the group is written once the leftovers are gone
            lambda: _marked(marker) == again.pid,
            30,
            "the second start's group recorded",
            interval=0.05,
        )
        assert not psutil.pid_exists(helper) or psutil.Process(helper).status() == "zombie"
    finally:
        again.kill()
        again.wait(10)


def _marked(marker: str) -> int:
    try:
        with open(marker, encoding="utf-8") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _group(pgid: int) -> list[int]:
    found = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != "zombie":
                found.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return found
