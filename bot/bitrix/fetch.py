"""Fetch mode: pull a Chatbots 2.0 bot's events with `imbot.v2.Event.get`, store, acknowledge.

Protocol notes §00 item 9; the docs' `chat-bots-v2/imbot.v2/events/event-get.md`. Passing
`offset` acknowledges every event below it; unacknowledged events stay 24 h. So one round is:
fetch with the offset of the last page *stored* (that call acknowledges it), turn the new page
into jobs (`admit_fetched`), commit them, wake the workers, and only then remember its
`nextOffset` for the next call. A crash between commit and acknowledgement re-fetches the same
events, whose de-dup keys storage already holds: each vote once. Whatever stops a page from
being stored (storage failing, the queue full, shutting down) leaves it unacknowledged, to be
fetched again after a back-off.

One consumer per bot: the instances sharing a database take a lease in it (`Storage.hold`);
the others stay passive and take over once the holder's lease runs out. An instance on
another database is noticed only by what the portal shows (`_is_foreign`) [UNCONFIRMED].

The poll interval, and why (B24_RATE_LIMIT = r requests/s, B24_POLL_BUDGET = b,
B24_ANSWER_TARGET = t):
- while a page says `hasMore` and moved the cursor, the next fetch goes at once;
- right after a page with events, it waits `quick`, doubling after each empty page up to
- the idle interval `1 / (r * b)`: an idle service makes at most `r * b` Event.get a second,
  the share b of the portal's budget (defaults 2 req/s * 0.25: one poll every 2 s).
- A command typed at a random moment waits for the next poll uniformly within one idle
  interval, so at p95 `0.95 * idle`, plus the work of fetching, voting and answering
  (`work_allowance`, 0.5 s): 0.95 * 2 + 0.5 = 2.4 s <= t = 3 s. When `0.95 / (r * b) +
  work_allowance > t` the two cannot both hold: the budget wins, and a warning at start gives
  both numbers.
Under load every call, Event.get included, goes through the coalescer's shared `batch`
requests (bot/bitrix/coalesce.py), so polling takes no request of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from bot.bitrix.coalesce import RestCaller
from bot.bitrix.v2events import FetchedPage, MessageTally, admit_fetched
from bot.errors import BitrixError
from bot.jobs import RetryRules
from bot.metrics import Metrics
from bot.storage import Storage

log = structlog.get_logger(__name__)

EVENT_GET: Final = "imbot.v2.Event.get"
# Event.get's errors for a bot that is gone or no longer ours (event-get.md).
BOT_MISSING: Final = frozenset({"BOT_NOT_FOUND", "BOT_OWNERSHIP_ERROR"})
# The documented types (event-get.md); anything else is counted as "other" (bounded labels).
EVENT_TYPES: Final = frozenset(
    {
        "ONIMBOTV2MESSAGEADD",
        "ONIMBOTV2MESSAGEUPDATE",
        "ONIMBOTV2MESSAGEDELETE",
        "ONIMBOTV2JOINCHAT",
        "ONIMBOTV2DELETE",
        "ONIMBOTV2CONTEXTGET",
        "ONIMBOTV2COMMANDADD",
        "ONIMBOTV2REACTIONCHANGE",
    }
)
MAX_PAGE: Final = 1000  # Event.get's largest `limit`
# The largest offset the portal can take back (PHP_INT_MAX). Not MAX_EVENT_ID + 1: a page
# whose last event has an odd id (that event skipped as malformed) must still be
# acknowledged, or it would be fetched again for 24 hours, holding back every later event.
MAX_OFFSET: Final = 2**63 - 1

State = Literal["waiting", "active", "passive", "stopped"]


@dataclass(frozen=True)
class PollTuning:
    """The settings (rate, budget_share, answer_target) and knobs tests shorten."""

    rate: float = 2.0  # B24_RATE_LIMIT: the portal's requests per second
    budget_share: float = 0.25  # B24_POLL_BUDGET: the share an idle poller may spend
    answer_target: float = 3.0  # B24_ANSWER_TARGET: p95 seconds from a message to its answer
    quick: float = 0.5  # the pause right after a page with events
    work_allowance: float = 0.5  # fetch, vote and answer, within answer_target
    page_limit: int = 100
    lease: float = 30.0  # seconds the consumer lease lasts unless renewed
    wait_for_bot: float = 1.0  # how often to look for a (new) bot id
    # How old an unacknowledged event gets before a poller that saw a foreign consumer takes
    # over (then the other consumer is taken to be gone): a live consumer acknowledges within
    # its own poll interval, a few seconds.
    foreign_takeover: float = 10.0
    backoff: RetryRules = field(
        default_factory=lambda: RetryRules(first_wait=1.0, longest_wait=60.0)
    )

    def __post_init__(self) -> None:
        if not (self.rate > 0 and 0 < self.budget_share <= 1 and self.answer_target > 0):
            raise ValueError("the rate, the budget share (up to 1) and the target are positive")

    @property
    def idle(self) -> float:
        """The pause of an idle poller: the budget's share of the rate, and no more."""
        return 1.0 / (self.rate * self.budget_share)

    @property
    def p95_answer(self) -> float:
        """The p95 answer time of a command typed while idle (see the module docstring)."""
        return 0.95 * self.idle + self.work_allowance


@dataclass(frozen=True)
class PollerStatus:
    """What /readyz shows of the poller."""

    state: State
    reason: str  # why waiting or passive: no_bot, another_instance, foreign_consumer
    since_success: float | None  # seconds since the last successful Event.get
    problem: str  # why the last round failed ("" when it did not)


class _Page(BaseModel):
    """`result` of Event.get: `{events, nextOffset, hasMore}` (event-get.md)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    events: list[Any] = Field(max_length=MAX_PAGE)
    next_offset: int = Field(alias="nextOffset", ge=0, le=MAX_OFFSET)
    has_more: StrictBool = Field(default=False, alias="hasMore")


def _age(event: object, now: float) -> float | None:
    """Seconds since the event's `date`, when it has a readable one."""
    date = event.get("date") if isinstance(event, dict) else None
    try:
        when = datetime.fromisoformat(date) if isinstance(date, str) else None
    except ValueError:
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(now - when.timestamp(), 0.0)


class FetchPoller:
    """One bot's consumer: `run()` is its one task; `step()` is one round of it."""

    def __init__(  # noqa: PLR0913 - plain values, wired by the app
        self,
        rest: RestCaller,
        *,
        bot_token: str,
        bot_id: Callable[[], int | None],
        storage: Storage,
        wake: Callable[[], None],
        may_rate: Callable[[int], bool],
        queue_limit: int,
        user_share: int,
        metrics: Metrics,
        clock: Callable[[], float],
        on_bot_missing: Callable[[int], None],
        consumer: str,
        tuning: PollTuning,
        accepting: Callable[[], bool] = lambda: True,
    ) -> None:
        self._rest, self._token, self._bot_id = rest, bot_token, bot_id
        self._storage, self._wake, self._may_rate = storage, wake, may_rate
        self._queue_limit, self._user_share = queue_limit, user_share
        self._metrics, self._clock, self._on_bot_missing = metrics, clock, on_bot_missing
        self._consumer, self._tuning, self._accepting = consumer, tuning, accepting
        self._bot: int | None = None
        self._offset: int | None = None  # the next call's offset: what is stored so far
        self._state: State = "waiting"
        self._reason = "no_bot"
        self._problem = ""
        self._failures = 0
        self._held_at = -math.inf  # when the lease was last renewed
        self._foreign = False
        self._trust_foreign = True
        self._last_success: float | None = None
        self._interval = tuning.idle
        self._tally = MessageTally()

    def status(self) -> PollerStatus:
        since = None if self._last_success is None else self._clock() - self._last_success
        return PollerStatus(self._state, self._reason, since, self._problem)

    async def run(self) -> None:
        """Poll until cancelled; unacknowledged events stay in the portal for the next start."""
        tuning = self._tuning
        if tuning.p95_answer > tuning.answer_target:
            log.warning(
                "fetch.budget_over_latency",
                idle_interval_s=round(tuning.idle, 3),
                p95_answer_s=round(tuning.p95_answer, 3),
                answer_target_s=tuning.answer_target,
                budget_share=tuning.budget_share,
                rate=tuning.rate,
            )
        try:
            while True:
                pause = await self.step()
                self._metrics.poll_interval.set(pause)
                await asyncio.sleep(pause)
        finally:
            self._set_state("stopped", "")
            with contextlib.suppress(Exception):
                await self._storage.let_go(self._consumer)

    async def step(self) -> float:
        """One round: the bot, the lease, one page fetched and stored. The pause before the
        next round. Its `nextOffset` is acknowledged by the next round's fetch."""
        bot_id = self._current_bot()
        if bot_id is None:
            self._set_state("waiting", "no_bot")
            return self._tuning.wait_for_bot
        lease = await self._hold_lease()
        if lease is not None:
            return lease
        if self._foreign:
            return await self._peek(bot_id)
        return await self._fetch_and_store(bot_id)

    async def _fetch_and_store(self, bot_id: int) -> float:
        params: dict[str, Any] = {"limit": self._tuning.page_limit}
        if self._offset is not None:
            params["offset"] = self._offset
        page = await self._fetch(bot_id, params)
        if page is None:
            return self._back_off()
        if self._is_foreign(page):
            return self._go_foreign()
        fetched = admit_fetched(
            page.events, received_at=self._clock(), may_rate=self._may_rate, tally=self._tally
        )
        self._metrics.events_rejected.labels(reason="malformed_event").inc(fetched.malformed)
        problem = await self._store(fetched)
        if problem:
            self._problem = problem
            return self._back_off()
        self._tally.record(fetched.admitted)
        moved = self._offset is None or page.next_offset > self._offset
        self._offset = page.next_offset
        if bot_id in fetched.deleted_bots:
            self._bot_gone(bot_id)
            return 0.0
        self._failures, self._problem = 0, ""
        return self._next_interval(page, moved=moved)

    def _current_bot(self) -> int | None:
        """The bot to fetch for; None while there is none. A bot reported missing is
        forgotten by the app at once (`on_bot_missing`), so whatever id comes after it is a
        registration made since, even when it is the same id: a BOT_NOT_FOUND the portal
        answered in passing, and registering again adopted the bot that was still there."""
        bot = self._bot_id()
        if bot is not None and bot != self._bot:
            self._bot, self._offset = bot, None
        return bot

    async def _hold_lease(self) -> float | None:
        """None while this instance is the consumer; else the pause before looking again."""
        now = self._clock()
        if self._state == "active" and now - self._held_at < self._tuning.lease / 3:
            return None
        try:
            held = await self._storage.hold(self._consumer, now=now, lease=self._tuning.lease)
        except Exception as error:  # noqa: BLE001 - whatever the engine raises: back off
            log.warning("fetch.lease_failed", error=type(error).__name__)
            self._problem = "storage_error"
            return self._back_off()
        if not held:
            self._offset = None  # on a takeover, fetch from what the portal still keeps
            self._set_state("passive", "another_instance")
            return min(self._tuning.lease / 3, self._tuning.idle)
        self._held_at = now
        if self._state != "active" and not self._foreign:
            self._set_state("active", "")
        return None

    async def _fetch(self, bot_id: int, params: dict[str, Any]) -> _Page | None:
        """One Event.get; None when it failed (logged without secrets, the bot's loss told)."""
        try:
            answer = await self._rest.call(
                EVENT_GET, {"botId": bot_id, "botToken": self._token, **params}
            )
            page = _Page.model_validate(answer)
        except BitrixError as error:  # carries no URL and no token (bot/errors.py)
            self._problem = error.code
            log.warning("fetch.failed", code=error.code, status=error.status, bot_id=bot_id)
            if error.code in BOT_MISSING:
                self._bot_gone(bot_id)
            return None
        except ValidationError as error:
            self._problem = "bad_page"
            log.warning("fetch.bad_page", errors=error.error_count())
            return None
        except Exception as error:  # noqa: BLE001 - the type only: a message may hold a URL
            self._problem = "request_failed"
            log.warning("fetch.failed", error=type(error).__name__, bot_id=bot_id)
            return None
        self._fetched(page.events)
        return page

    def _fetched(self, events: Sequence[Any]) -> None:
        now = self._clock()
        self._last_success = now
        self._metrics.fetch_last_success.set(now)
        ages = [age for age in (_age(event, now) for event in events) if age is not None]
        if ages:
            self._metrics.fetch_lag.observe(max(ages))
        for event in events:
            kind = event.get("type") if isinstance(event, dict) else None
            label = kind if isinstance(kind, str) and kind in EVENT_TYPES else "other"
            self._metrics.events_fetched.labels(type=label).inc()

    async def _store(self, page: FetchedPage) -> str:
        """Commit the page's jobs, message by message; "" when the page may be acknowledged,
        else why it must be fetched again (what was stored is then a duplicate)."""
        if not self._accepting():
            return "shutting_down"
        stored = 0
        try:
            for group in page.groups:
                try:
                    # Briefly: a page not stored is fetched again, and a stop is not held up.
                    fresh = await self._storage.enqueue(
                        group, limit=self._queue_limit, user_limit=self._user_share, brief=True
                    )
                except Exception as error:  # noqa: BLE001 - whatever the engine raises
                    log.warning("fetch.storage_failed", error=type(error).__name__)
                    return "storage_error"
                if fresh == "queue_full":
                    log.warning("fetch.queue_full", unfinished_limit=self._queue_limit)
                    return "queue_full"
                if fresh == "user_share":
                    # Dropped, as webhook mode's 503 drops it: holding it back would hold
                    # every later event too (the offset acknowledges a prefix), so one busy
                    # user would block everyone's commands.
                    self._metrics.events_rejected.labels(reason="user_share").inc()
                    log.warning("fetch.dropped", reason="user_share", user_id=group[0].author_id)
                    continue
                stored += len(fresh)
        finally:
            if stored:
                self._wake()
        if stored or page.ignored or page.malformed:  # an idle poll every 2 s says nothing
            log.info(
                "fetch.stored", commands=stored, ignored=page.ignored, malformed=page.malformed
            )
        return ""

    def _next_interval(self, page: _Page, *, moved: bool) -> float:
        """A page that did not move the cursor is taken for an empty one, whatever its
        `hasMore` says: fetching it again at once would spin on the same page."""
        tuning = self._tuning
        if moved and page.has_more:
            self._interval = 0.0
        elif moved and page.events:
            self._interval = min(tuning.quick, tuning.idle)
        else:
            self._interval = min(max(self._interval * 2, tuning.quick), tuning.idle)
        return self._interval

    def _back_off(self) -> float:
        self._failures += 1
        return self._tuning.backoff.wait(self._failures)

    def _bot_gone(self, bot_id: int) -> None:
        log.warning("fetch.bot_missing", bot_id=bot_id)
        self._offset = None
        self._set_state("waiting", "no_bot")
        self._on_bot_missing(bot_id)

    def _is_foreign(self, page: _Page) -> bool:
        """Someone else acknowledged beyond our offset: an empty page whose `nextOffset` is
        past the offset we passed. [UNCONFIRMED: the sandbox answers an empty page with the
        portal's acknowledged cursor; the docs show only a non-empty page.] Once the signal
        proved false (we went passive, and then nobody acknowledged), it is not trusted again:
        a portal that answers otherwise must not keep the bot silent."""
        return (
            self._trust_foreign
            and self._offset is not None
            and not page.events
            and page.next_offset > self._offset
        )

    def _go_foreign(self) -> float:
        log.warning("fetch.foreign_consumer", consumer=self._consumer, bot_id=self._bot)
        self._foreign, self._offset = True, None
        self._set_state("passive", "foreign_consumer")
        return self._tuning.idle

    async def _peek(self, bot_id: int) -> float:
        """While another consumer acknowledges: look without `offset` (which acknowledges
        nothing); take over once an event stays unacknowledged for `foreign_takeover`."""
        page = await self._fetch(bot_id, {"limit": 1})
        if page is None:
            return self._back_off()
        age = _age(page.events[0], self._clock()) if page.events else None
        if age is None or age < self._tuning.foreign_takeover:
            return self._tuning.idle
        log.warning("fetch.takeover", reason="foreign_consumer_silent", oldest_s=round(age))
        # Either the other consumer is gone, or there never was one and the portal's cursor
        # means something else: from now on this instance consumes, whatever the cursor says.
        log.warning("fetch.foreign_signal_ignored", consumer=self._consumer)
        self._foreign, self._trust_foreign = False, False
        self._set_state("active", "")
        return 0.0

    def _set_state(self, state: State, reason: str) -> None:
        if (state, reason) == (self._state, self._reason):
            return
        if state == "passive":  # said once per change, not every round
            log.warning("fetch.passive", reason=reason, consumer=self._consumer)
        else:
            log.info("fetch.state", state=state, reason=reason)
        self._state, self._reason = state, reason
        self._metrics.fetch_active.set(1 if state == "active" else 0)
