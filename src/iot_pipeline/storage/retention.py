"""Retention by whole time-based indices: engine-neutral and cheap.

Raw readings live in daily indices (`RETENTION_DAYS`); aggregates in daily (1m), monthly (1h)
and yearly (1d) indices, each resolution with its own `AGGREGATE_RETENTION_DAYS_*`. An index
goes when the last day it covers is older than what is kept.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from iot_pipeline.indices import aggregates_pattern, readings_pattern
from iot_pipeline.settings import Settings

_BUCKET = re.compile(r"-(\d{4})(?:\.(\d{2})(?:\.(\d{2}))?)?$")


def last_day(name: str) -> date | None:
    """The last day a time-bucketed index covers (`-YYYY.MM.DD`, `-YYYY.MM`, `-YYYY`)."""
    match = _BUCKET.search(name)
    if not match:
        return None
    year, month, day = match.groups()
    if day is not None:
        return date(int(year), int(month), int(day))
    if month is not None:
        following = date(int(year) + int(month) // 12, int(month) % 12 + 1, 1)
        return following - timedelta(days=1)
    return date(int(year), 12, 31)


def expired_indices(names: list[str], today: date, keep_days: int) -> list[str]:
    """Time-bucketed indices whose last day is older than `keep_days` before today."""
    if keep_days < 1:
        raise ValueError("keep_days must be at least 1")
    oldest_kept = today - timedelta(days=keep_days - 1)
    expired = []
    for name in names:
        last = last_day(name)
        if last is not None and last < oldest_kept:
            expired.append(name)
    return sorted(expired)


def apply_retention(settings: Settings, keep_days: int, today: date | None = None) -> list[str]:
    """Delete the reading indices older than `keep_days` and the aggregate indices past their
    resolution's retention; returns the names deleted."""
    from iot_pipeline.storage import make_store

    prefix = settings.search_index_prefix
    today = today or datetime.now(UTC).date()
    kept = {readings_pattern(prefix): keep_days}
    kept |= {
        aggregates_pattern(prefix, resolution): days
        for resolution, days in settings.aggregate_retention_days.items()
    }
    store = make_store(settings)
    deleted: list[str] = []
    try:
        for pattern, days in kept.items():
            expired = expired_indices(store.list_indices(pattern), today, days)
            store.delete_indices(expired)
            deleted += expired
    finally:
        store.close()
    return deleted


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m iot_pipeline.storage.retention [--keep-days N]`."""
    settings = Settings()
    parser = argparse.ArgumentParser(
        description="Delete reading and aggregate indices past their retention."
    )
    parser.add_argument("--keep-days", type=int, default=settings.retention_days)
    args = parser.parse_args(argv)
    deleted = apply_retention(settings, args.keep_days)
    print(
        f"retention: kept {args.keep_days} days, deleted {len(deleted)} indices "
        + (", ".join(deleted) if deleted else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
