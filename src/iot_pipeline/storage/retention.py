"""Retention by whole time-based indices: engine-neutral and cheap."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from iot_pipeline.settings import Settings

_DAY = re.compile(r"-(\d{4})\.(\d{2})\.(\d{2})$")


def expired_indices(names: list[str], today: date, keep_days: int) -> list[str]:
    """Daily indices (`...-YYYY.MM.DD`) whose day is older than `keep_days` before today."""
    if keep_days < 1:
        raise ValueError("keep_days must be at least 1")
    oldest_kept = today - timedelta(days=keep_days - 1)
    expired = []
    for name in names:
        match = _DAY.search(name)
        if match and date(*map(int, match.groups())) < oldest_kept:
            expired.append(name)
    return sorted(expired)


def apply_retention(settings: Settings, keep_days: int, today: date | None = None) -> list[str]:
    """Delete the daily reading indices older than `keep_days`; returns their names."""
    from iot_pipeline.storage import make_store

    store = make_store(settings)
    try:
        names = store.list_indices(f"{settings.search_index_prefix}-readings-*")
        expired = expired_indices(names, today or datetime.now(UTC).date(), keep_days)
        store.delete_indices(expired)
    finally:
        store.close()
    return expired


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m iot_pipeline.storage.retention [--keep-days N]`."""
    settings = Settings()
    parser = argparse.ArgumentParser(description="Delete reading indices past retention.")
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
