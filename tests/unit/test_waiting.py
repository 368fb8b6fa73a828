"""The tests' wait on a condition (`support.waiting.eventually`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from support.waiting import eventually


def _answers(*answers: object) -> Callable[[], object]:
    """A predicate giving these answers in turn (an exception instance is raised)."""
    given: Iterator[object] = iter(answers)

    def predicate() -> object:
        answer = next(given)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return predicate


def test_returns_the_first_truthy_value() -> None:
    assert eventually(_answers(None, 0, [], "ready", "later"), 5, "ready", interval=0) == "ready"


def test_after_the_timeout_fails_naming_what_and_the_last_value() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"^the thing: not within 0 s; last value: \[\]$"):
        eventually(list, 0.05, "the thing", interval=10)  # never sleeps past the deadline
    assert time.monotonic() - started < 0.5


def test_ignored_exceptions_count_as_not_yet() -> None:
    predicate = _answers(KeyError("a"), ConnectionError("b"), 42)
    assert eventually(predicate, 5, "x", interval=0, ignoring=(KeyError, OSError)) == 42


def test_the_last_ignored_exception_is_named_and_chained() -> None:
    def refused() -> bool:
        raise ConnectionRefusedError("no one there")

    with pytest.raises(AssertionError, match=r"server up: .*ConnectionRefusedError") as failure:
        eventually(refused, 0.05, "server up", interval=0.01, ignoring=(OSError,))
    assert isinstance(failure.value.__cause__, ConnectionRefusedError)


def test_other_exceptions_propagate_at_once() -> None:
    predicate = _answers(ValueError("broken"), True)
    with pytest.raises(ValueError, match="broken"):
        eventually(predicate, 5, "x", interval=0, ignoring=(KeyError,))
    assert predicate() is True  # called once only


def test_an_asserting_predicate_puts_what_it_saw_in_the_failure() -> None:
    def caught_up() -> bool:
        behind = {3: 7}
        assert not behind, f"behind: {behind}"
        return True

    with pytest.raises(AssertionError, match=r"caught up: .*AssertionError\('behind: \{3: 7\}"):
        eventually(caught_up, 0.05, "caught up", interval=0.01, ignoring=(AssertionError,))
