"""Faults injected into the sandbox's fakes (the portal's and Telegram's Bot API): each answers
`times` calls (-1: every call), then leaves the list."""

from __future__ import annotations

from typing import Protocol, TypeVar


class Counted(Protocol):
    times: int


F = TypeVar("F", bound=Counted)


def spend(faults: list[F], fault: F) -> F:
    """One use of `fault`: it leaves `faults` with its last use (never, for -1)."""
    if fault.times > 0:
        fault.times -= 1
    if fault.times == 0:
        faults.remove(fault)
    return fault
