"""`python -m iot_pipeline.stack.launch MARKER -- COMMAND...`: how supervisord starts a program.

supervisord gives each program its own process group, and ends the group when asked to stop
it, but not when the program's main process dies on its own: what the main process had
started lives on. The Airflow scheduler, for one, leaves its LocalExecutor workers behind when
it is killed. So before it runs the program, the launcher ends the processes still in the
group of the previous start (recorded in MARKER), then records its own group and execs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import psutil


def leftovers(pgid: int, leader_started: float) -> list[psutil.Process]:
    """Processes still in the process group `pgid` that an earlier start left behind."""
    if psutil.pid_exists(pgid):
        return []  # the leader lives: the group is not (or no longer) a dead program's
    found = []
    for process in psutil.process_iter(["uids", "create_time"]):
        try:
            if (
                os.getpgid(process.pid) == pgid
                and process.info["uids"].real == os.getuid()
                and process.info["create_time"] >= leader_started
            ):
                found.append(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def _end_previous(marker: Path) -> None:
    try:
        pgid_text, started_text = marker.read_text(encoding="utf-8").split()
        pgid, started = int(pgid_text), float(started_text)
    except (OSError, ValueError):
        return
    processes = leftovers(pgid, started)
    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(processes, timeout=10)
    if processes:
        print(f"ended {len(processes)} process(es) left by the previous start", flush=True)


def _launch(marker: Path, command: list[str]) -> NoReturn:
    _end_previous(marker)
    started = psutil.Process(os.getpid()).create_time()
    marker.write_text(f"{os.getpgrp()} {started}\n", encoding="utf-8")
    os.execvp(command[0], command)  # noqa: S606 - the program's own argv, no shell


def main(argv: Sequence[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m iot_pipeline.stack.launch MARKER -- COMMAND...", file=sys.stderr)
        return 2
    return _launch(Path(argv[0]), list(argv[2:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
