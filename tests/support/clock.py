"""Test data dated relative to today, never on a fixed date: raw readings are kept 30 days
(`RETENTION_DAYS`), and a reading older than that is dead-lettered as `beyond_retention`, so a
fixed date would turn a test's data into dead letters a month after it was written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def day(days_ago: int, hour: int = 0, minute: int = 0) -> datetime:
    """That many days before today (UTC), at that time of day."""
    return TODAY - timedelta(days=days_ago) + timedelta(hours=hour, minutes=minute)


def minute_stamp(moment: datetime) -> str:
    """As the simulator's `--start` takes it: 2026-11-27T06:00Z."""
    return moment.strftime("%Y-%m-%dT%H:%MZ")


def event_stamp(moment: datetime) -> str:
    """As readings carry it: 2026-11-27T06:00:00.000Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
