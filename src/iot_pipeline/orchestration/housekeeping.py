"""Airflow's own history, bounded: old metadata rows and old task log files are deleted.

Every ETL run adds rows to the metadata DB and about 50 KB of task logs (~75 MB a day at one
run a minute); `iot_housekeeping` keeps `AIRFLOW_HISTORY_DAYS` of both.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

# What `airflow db clean` may purge: run history, never DAG definitions or connections.
HISTORY_TABLES = (
    "dag_run",
    "task_instance",
    "task_instance_history",
    "task_reschedule",
    "xcom",
    "job",
    "log",
    "import_error",
    "trigger",
    "callback",
)


@dataclass(frozen=True)
class Pruned:
    """What `prune_logs` deleted."""

    files: int
    bytes: int
    folders: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def prune_logs(folder: Path, keep: timedelta, now: float | None = None) -> Pruned:
    """Delete the files under `folder` last written before `now - keep`, then the folders that
    are left empty and are as old (a fresh, still empty folder is a task about to log)."""
    cutoff = (time.time() if now is None else now) - keep.total_seconds()
    if not folder.is_dir():
        return Pruned(0, 0, 0)
    # folders untouched since the cutoff, seen before deleting files touches them
    old_folders = sorted(
        (p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink() and _older(p, cutoff)),
        key=lambda p: len(p.parts),
        reverse=True,  # deepest first
    )
    files = size = 0
    for path in folder.rglob("*"):
        try:
            stat = path.lstat()
            if path.is_file() and not path.is_symlink() and stat.st_mtime < cutoff:
                path.unlink()
                files += 1
                size += stat.st_size
        except OSError:
            continue  # removed meanwhile, or not ours to remove
    folders = 0
    for path in old_folders:
        try:
            if not any(path.iterdir()):
                path.rmdir()
                folders += 1
        except OSError:
            continue
    return Pruned(files, size, folders)


def _older(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except OSError:
        return False


def clean_command(before: datetime) -> list[str]:
    """`airflow db clean` for the history tables, before `before`, without archive tables."""
    airflow = shutil.which("airflow") or str(Path(sys.executable).parent / "airflow")
    return [
        airflow,
        "db",
        "clean",
        "--clean-before-timestamp",
        before.astimezone(UTC).isoformat(),
        "--tables",
        ",".join(HISTORY_TABLES),
        "--skip-archive",
        "--error-on-cleanup-failure",
        "--yes",
    ]


def clean_metadata(keep: timedelta, now: datetime | None = None) -> str:
    """Purge metadata rows older than `keep` (Airflow keeps each DAG's latest run); returns
    the cutoff. Raises with Airflow's output when the command fails."""
    before = (now or datetime.now(UTC)) - keep
    done = subprocess.run(
        clean_command(before), capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"airflow db clean failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return before.isoformat()
