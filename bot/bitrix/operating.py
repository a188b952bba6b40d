"""The operating-time limit, kept on our side (protocol notes §00 item 10, §4.2).

Bitrix24 lets each method run 480 s per 10 minutes, counted in ten one-minute buckets; every
answer's `time.operating` says how much the method has used, a batch says it per call
(`result_time`), and a method past its budget answers 429 OPERATION_TIME_LIMIT until
`operating_reset_at`. The budget below keeps what each method spent in the same buckets, on the
portal's clock (the answers' `finish`), fed by those figures; a call that would overrun waits
until enough drops out, and after a 429 the method waits until the portal's reset time.

Our own code rather than a library: the limiters at hand (aiolimiter, and the token buckets
and windows of other packages) charge a cost known before the call; here the cost is known
only from the answer, and the portal's own figure must be able to correct ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

log = structlog.get_logger(__name__)

LIMIT: Final = 480.0  # seconds of execution per method within the window
WINDOW: Final = 600.0  # seconds
BUCKETS: Final = 10
# [UNCONFIRMED] that the portal's buckets start on whole minutes of its clock: what we spent
# is kept one bucket longer than the portal keeps it, so a shifted bucket never makes us
# think the budget back before it is.
_MARGIN: Final = 1


@dataclass
class _Method:
    """What one method spent within the window, as far as we know."""

    spent: deque[tuple[float, float]] = field(default_factory=deque)  # (portal time, seconds)
    in_flight: int = 0
    blocked_until: float = 0.0  # our clock
    resets_at: float = 0.0  # the last `operating_reset_at` the portal named, on our clock
    # What the answers revealed in all, and how many revealed something: the mean is what
    # the next call is expected to cost. Answers may come back in another order than the
    # portal ran the calls; one answer may then reveal two calls, never less than one.
    revealed: float = 0.0
    revealing: int = 0
    answered: bool = False  # some call of the method was answered


class OperatingBudget:
    """One portal's operating-time budget, per method (lower-case names)."""

    def __init__(
        self,
        *,
        limit: float = LIMIT,
        window: float = WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit = limit
        self.window = window
        self._bucket = window / BUCKETS
        self._clock = clock
        self._skew = 0.0  # the portal's clock minus ours, from the last answer's `finish`
        self._last = -math.inf  # our clock's latest reading
        self._methods: dict[str, _Method] = {}
        self._changed = asyncio.Event()

    def used(self, method: str) -> float:
        """Seconds the method has spent within the window (and the margin), as we count."""
        return self._counted(self._state(method.lower()), margin=_MARGIN)

    async def acquire(self, methods: Iterable[str]) -> None:
        """Wait until every method (one entry per call) may run without overrunning; then
        count the calls as in flight until `release`."""
        wanted = Counter(m.lower() for m in methods)
        waited = False
        while True:
            wait = max((self._wait(m, n) for m, n in wanted.items()), default=0.0)
            if wait <= 0:
                break
            if not waited:  # once per call, not at every wake-up
                log.info("bitrix.operating_wait", methods=sorted(wanted), wait_s=round(wait, 3))
                waited = True
            self._changed.clear()
            # Woken early when a call in flight finishes (it may have cost less than feared).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait)
        for method, count in wanted.items():
            self._state(method).in_flight += count

    def release(self, methods: Iterable[str]) -> None:
        """The calls acquired together are answered (or failed)."""
        for method in methods:
            state = self._state(method.lower())
            state.in_flight = max(0, state.in_flight - 1)
        self._changed.set()

    def observe(self, method: str, answer_time: Mapping[str, Any]) -> None:
        """Take in an answer's `time`: what the portal says the method has used. An answer
        without the figure still ends the one-at-a-time probing of a new method: the 429 and
        its reset time are then all there is to go by."""
        state = self._state(method.lower())
        state.answered = True
        finish = _number(answer_time.get("finish"))
        if finish is not None:
            self._skew = finish - self._now()
        reset_in = self._reset_in(answer_time)
        if reset_in is not None:
            state.resets_at = self._now() + reset_in
        reported = _number(answer_time.get("operating"))
        if reported is None:
            return
        # Compared with what the portal itself still counts (no margin): what it reports
        # beyond that is new, ours or another caller's.
        unseen = reported - self._counted(state, margin=0)
        if unseen > 0:
            state.spent.append((finish if finish is not None else self._portal_now(), unseen))
            state.revealed += unseen
            state.revealing += 1

    def block(self, method: str, answer_time: Mapping[str, Any]) -> None:
        """A 429 OPERATION_TIME_LIMIT: the method waits until the portal's reset time, from
        this answer or else the last one that named it (without either, the client's retry
        backoff is all the wait)."""
        state = self._state(method.lower())
        now = self._now()
        reset_in = self._reset_in(answer_time)
        wait = reset_in if reset_in is not None else max(state.resets_at - now, 0.0)
        state.blocked_until = max(state.blocked_until, now + wait)
        log.warning("bitrix.operating_blocked", method=method, wait_s=round(wait, 3))

    def _reset_in(self, answer_time: Mapping[str, Any]) -> float | None:
        """Seconds until `operating_reset_at`, reckoned on the portal's own clock (`finish`)."""
        reset_at = _number(answer_time.get("operating_reset_at"))
        if reset_at is None:
            return None
        finish = _number(answer_time.get("finish"))
        wait = reset_at - (finish if finish is not None else self._portal_now())
        return min(max(wait, 0.0), self.window)  # a garbled time never blocks for longer

    def _wait(self, method: str, calls: int) -> float:
        """Seconds until `calls` more calls of the method fit; 0 if they fit now."""
        state = self._state(method)
        now = self._now()
        if state.blocked_until > now:
            return min(state.blocked_until - now, self.window)
        used = self._counted(state, margin=_MARGIN)
        if used <= 0 and state.in_flight == 0:
            return 0.0  # an idle method may always make a call, whatever one may cost
        if not state.answered:
            # What a call costs is not known yet: one request at a time until an answer says.
            return 0.0 if state.in_flight == 0 else self._bucket / 10
        expected = state.revealed / state.revealing if state.revealing else 0.0
        excess = used + (state.in_flight + calls) * expected - self.limit
        if excess <= 0:
            return 0.0
        freed = 0.0
        for at, seconds in state.spent:
            freed += seconds
            if freed >= excess:
                gone = (self._index(at) + BUCKETS + _MARGIN) * self._bucket
                return min(max(gone - self._portal_now(), self._bucket / 100), self.window)
        # Even an empty window would not hold the calls in flight: wait for them to finish
        # (`release` wakes the waiters), looking again now and then.
        return self._bucket / 10

    def _counted(self, state: _Method, *, margin: int) -> float:
        """Seconds in the buckets the portal still counts, plus `margin` older ones."""
        oldest = self._index(self._portal_now()) - BUCKETS - margin + 1
        while state.spent and self._index(state.spent[0][0]) < oldest - _MARGIN + margin:
            state.spent.popleft()  # beyond even the margin: gone for good
        return sum(seconds for at, seconds in state.spent if self._index(at) >= oldest)

    def _index(self, portal_time: float) -> int:
        return math.floor(portal_time / self._bucket)

    def _now(self) -> float:
        """Our clock. Stepped back (NTP), it takes our own deadlines back with it: a wait
        stays as long as the portal said, never an hour more. (The portal's clock is learnt
        again from the next answer's `finish`.)"""
        now = self._clock()
        if now < self._last:
            for state in self._methods.values():
                state.blocked_until -= self._last - now
                state.resets_at -= self._last - now
        self._last = now
        return now

    def _portal_now(self) -> float:
        return self._now() + self._skew

    def _state(self, method: str) -> _Method:
        return self._methods.setdefault(method, _Method())


def _number(value: Any) -> float | None:
    """A finite figure, or None: `float()` and `json.loads` both take `inf` and `NaN`, and
    either as the portal's clock would make every later call fail before it leaves."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
