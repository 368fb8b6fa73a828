"""Retention by whole time-based indices: engine-neutral and cheap."""

from __future__ import annotations

import re
from datetime import date, timedelta

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
