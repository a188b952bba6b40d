"""What strangers may cost: the private chat with the bot is open to every Telegram user.

A stranger (a Telegram user not linked to anyone) comes to the private chat to link their
account: `/start <code>`, `/link`, `/help`. Each command taken becomes a job, an audit row and
an answer, so an unbounded number of accounts, or one account writing without end, would grow
the database without bound. The gate takes at most `PER_USER` commands of one stranger in
`WINDOW` (enough to link with a typo or two; `bot/links.py` allows 5 wrong codes in the same
10 minutes) and at most `PER_MINUTE` of all strangers together; the rest cost one log line.
So strangers add at most `PER_MINUTE` jobs a minute, and the gate itself remembers at most
`TRACKED` people. Linked users and the allowed groups are not gated here (their bounds are the
per-user share and the message's command limit, bot/intake.py).

Written here rather than taken from aiolimiter (already a dependency): its leaky bucket makes a
caller wait, and one limiter per key would be kept without bound; this gate must refuse at once,
per person, and forget people whose window has passed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

PER_USER: Final = 10
WINDOW: Final = 600.0  # seconds
PER_MINUTE: Final = 60
TRACKED: Final = 10_000


@dataclass
class StrangerGate:
    """Whether one more private command of a stranger is taken."""

    per_user: int = PER_USER
    window: float = WINDOW
    per_minute: int = PER_MINUTE
    tracked: int = TRACKED
    clock: Callable[[], float] = time.monotonic
    _taken: dict[int, deque[float]] = field(default_factory=dict)
    _all: deque[float] = field(default_factory=deque)

    def admits(self, user_id: int) -> bool:
        now = self.clock()
        _expire(self._all, now - 60.0)
        mine = self._taken.get(user_id)
        if mine is not None:
            _expire(mine, now - self.window)
        if len(self._all) >= self.per_minute or (mine is not None and len(mine) >= self.per_user):
            return False
        if mine is None:
            if len(self._taken) >= self.tracked and not self._forget(now):
                return False  # every remembered stranger is still in their window
            mine = self._taken.setdefault(user_id, deque())
        mine.append(now)
        self._all.append(now)
        return True

    def _forget(self, now: float) -> bool:
        """Forget the strangers whose window has passed; whether any room was made."""
        self._taken = {u: t for u, t in self._taken.items() if t and t[-1] > now - self.window}
        return len(self._taken) < self.tracked


def _expire(times: deque[float], before: float) -> None:
    while times and times[0] <= before:
        times.popleft()
