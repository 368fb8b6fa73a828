"""Waiting on a condition, never for a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.2,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `predicate` until it returns a truthy value, and return that value.

    It is called again every `interval` seconds (a sleep never runs past the deadline). An
    exception of a type in `ignoring` counts as "not yet"; any other one propagates at once.
    When `timeout` seconds pass without a truthy value, raises AssertionError naming `what`
    and the last value or ignored exception. A predicate that asserts with a message, waited
    on with `ignoring=(AssertionError,)`, puts the state it last saw in that failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        cause: BaseException | None = None
        try:
            value = predicate()
        except ignoring as error:
            last, cause = f"last error: {error!r}", error
        else:
            if value:
                return value
            last = f"last value: {value!r}"
        now = time.monotonic()
        if now >= deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s; {last}") from cause
        time.sleep(min(interval, deadline - now))
