"""The strangers' gate (bot/telegram/strangers.py): per person, for everyone, in memory bounded."""

from __future__ import annotations

from bot.telegram.strangers import StrangerGate


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_stranger_gets_their_share_again_once_the_window_has_passed() -> None:
    clock = Clock()
    gate = StrangerGate(per_user=3, window=600.0, per_minute=100, clock=clock)
    assert [gate.admits(1) for _ in range(4)] == [True, True, True, False]
    clock.now = 599.0
    assert gate.admits(1) is False
    clock.now = 601.0
    assert gate.admits(1) is True


def test_all_strangers_together_get_at_most_the_minutes_share() -> None:
    clock = Clock()
    gate = StrangerGate(per_user=3, per_minute=5, clock=clock)
    assert [gate.admits(user) for user in range(7)] == [True] * 5 + [False] * 2
    clock.now = 61.0
    assert gate.admits(8) is True


def test_the_gate_remembers_at_most_so_many_strangers() -> None:
    clock = Clock()
    gate = StrangerGate(per_user=1, window=600.0, per_minute=1000, tracked=3, clock=clock)
    assert [gate.admits(user) for user in range(4)] == [True, True, True, False]
    clock.now = 700.0  # their windows have passed: forgotten, room for new ones
    assert gate.admits(4) is True
    assert len(gate._taken) == 1  # noqa: SLF001 - the bound itself is what is tested
