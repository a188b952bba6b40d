"""The fetch-mode poller (issue 9 items 3, 4, 7): store, then acknowledge; one consumer per bot;
an idle budget. Over HTTP against the sandbox portal, with real SQLite.

A fetch-mode bot is registered through the sandbox's REST API, users type through its event
sender, and the poller fetches with `imbot.v2.Event.get`. `FetchPoller.step()` runs one round,
so a test can stop a poller between storing a page and acknowledging it (the next round's
fetch acknowledges), as a `kill -9` would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from bot.bitrix.client import BitrixClient
from bot.bitrix.coalesce import Coalescer, RestCaller
from bot.bitrix.fetch import EVENT_GET, FetchPoller, PollTuning
from bot.jobs import RetryRules, session_of
from bot.metrics import Metrics
from bot.sandbox.app import EVENTS
from bot.sandbox.portal import Portal
from bot.sandbox.v2.queue import QueuedEvent
from bot.storage import Storage, open_storage
from tests.bot.sandbox.v2.test_methods import TOKEN, register_rate, register_v2
from tests.bot.storage.test_sqlite import entry
from tests.harness import eventually, job_rows, write_locked

SUPERVISORS = frozenset({1, 27})
GROUP = "chat2001"
RECORDED_GET = EVENT_GET.lower()  # the sandbox records method names in lower case
# Quick rounds for tests: idle 0.1 s, a one-second lease, short back-offs.
FAST_POLL = PollTuning(
    rate=20.0,
    budget_share=0.5,
    quick=0.05,
    lease=1.0,
    wait_for_bot=0.05,
    foreign_takeover=60.0,
    backoff=RetryRules(first_wait=0.05, longest_wait=0.2),
)


@dataclass
class Rig:
    """The sandbox with a fetch-mode bot, and pollers over databases in tmp_path."""

    http: aiohttp.ClientSession
    sandbox: TestServer
    portal: Portal
    client: BitrixClient
    tmp_path: Path
    bot_id: int | None
    missing: list[int] = field(default_factory=list)
    wakes: int = 0
    storages: list[Storage] = field(default_factory=list)
    tasks: dict[FetchPoller, asyncio.Task[None]] = field(default_factory=dict)

    def url(self, name: str = "bot") -> str:
        return f"sqlite:///{self.tmp_path / name}.sqlite3"

    async def storage(self, name: str = "bot") -> Storage:
        storage = await open_storage(self.url(name), session_of=session_of)
        self.storages.append(storage)
        return storage

    def wake(self) -> None:
        self.wakes += 1

    def bot_gone(self, bot_id: int) -> None:
        self.missing.append(bot_id)
        self.bot_id = None  # the app forgets the bot, and registers again

    def poller(
        self,
        storage: Storage,
        *,
        rest: RestCaller | None = None,
        token: str = TOKEN,
        tuning: PollTuning = FAST_POLL,
        queue_limit: int = 100,
        user_share: int = 50,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        accepting: Callable[[], bool] = lambda: True,
    ) -> FetchPoller:
        return FetchPoller(
            rest or self.client,
            bot_token=token,
            bot_id=lambda: self.bot_id,
            storage=storage,
            wake=self.wake,
            may_rate=SUPERVISORS.__contains__,
            queue_limit=queue_limit,
            user_share=user_share,
            metrics=metrics or Metrics(),
            clock=clock,
            on_bot_missing=self.bot_gone,
            consumer="sandbox.test/rating_bot",
            tuning=tuning,
            accepting=accepting,
        )

    def start(self, poller: FetchPoller) -> None:
        self.tasks[poller] = asyncio.create_task(poller.run())

    async def stop(self, poller: FetchPoller) -> None:
        """Cancelled, as at shutdown."""
        task = self.tasks.pop(poller)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def say(self, author: int, to: int | str, text: str) -> None:
        await self.sandbox.app[EVENTS].send_message(author, to, text)

    def unacknowledged(self) -> list[QueuedEvent]:
        """What the portal still keeps for the bot: what no fetch's offset has passed."""
        assert self.bot_id is not None
        queue = self.portal.queue_of(self.bot_id)
        return [e for e in queue.events if e.event_id >= queue.acknowledged]

    def event_gets(self) -> int:
        return sum(1 for c in self.portal.calls if c.method == RECORDED_GET)


@pytest.fixture
async def rig(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    make_client: Callable[..., BitrixClient],
    tmp_path: Path,
) -> AsyncIterator[Rig]:
    bot_id = await register_v2(http, sandbox, isSupportOpenline=True)
    await register_rate(http, sandbox, bot_id)
    await register_rate(http, sandbox, bot_id, command="help", title={"en": "Help"})
    rig = Rig(http, sandbox, portal, make_client(), tmp_path, bot_id)
    yield rig
    for poller in list(rig.tasks):
        await rig.stop(poller)
    for storage in rig.storages:
        await storage.close()


def texts(rig: Rig, name: str = "bot") -> list[str]:
    return [text for text, *_ in job_rows(rig.url(name))]


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    with capture_logs() as captured:
        yield captured


# ---- store, then acknowledge ---------------------------------------------------------------


async def test_a_page_is_stored_first_and_acknowledged_by_the_next_fetch(rig: Rig) -> None:
    poller = rig.poller(await rig.storage())
    await rig.say(27, rig.bot_id or 0, "/rate 494 5 Молодец")
    await poller.step()
    assert texts(rig) == ["/rate 494 5 Молодец"]
    assert rig.wakes == 1
    assert len(rig.unacknowledged()) == 1  # stored, not yet acknowledged
    await poller.step()
    assert rig.unacknowledged() == []
    assert texts(rig) == ["/rate 494 5 Молодец"]


@pytest.mark.parametrize(
    ("typed", "jobs"),
    [
        (["/rate 494 5 Молодец"], ["/rate 494 5 Молодец"]),
        (  # v2 sends one event per line: three events, three votes, never six
            ["/rate 494 5 a\n/rate 495 4 b\n/rate 496 3 c"],
            ["/rate 494 5 a", "/rate 495 4 b", "/rate 496 3 c"],
        ),
        (["/rate 494 5", "/rate 495 4", "/help"], ["/rate 494 5", "/rate 495 4", "/help"]),
    ],
)
async def test_typed_commands_become_jobs_once_and_the_queue_is_acknowledged(
    rig: Rig, typed: list[str], jobs: list[str]
) -> None:
    rig.start(rig.poller(await rig.storage()))
    for text in typed:
        await rig.say(27, GROUP, text)
    await eventually(lambda: len(texts(rig)) == len(jobs) and not rig.unacknowledged())
    await asyncio.sleep(FAST_POLL.idle * 3)  # more rounds: nothing comes twice
    assert texts(rig) == jobs


async def test_commands_typed_while_no_poller_runs_are_all_stored_once_at_start(
    rig: Rig,
) -> None:
    for n in range(3):
        await rig.say(27, GROUP, f"/rate 49{n} 5")
    rig.start(rig.poller(await rig.storage()))
    await eventually(lambda: len(texts(rig)) == 3 and not rig.unacknowledged())
    assert texts(rig) == ["/rate 490 5", "/rate 491 5", "/rate 492 5"]


async def test_killed_after_storing_before_acknowledging_a_new_poller_stores_nothing_twice(
    rig: Rig,
) -> None:
    await rig.say(27, GROUP, "/rate 494 5 a\n/rate 495 4 b")
    killed = rig.poller(await rig.storage())
    await killed.step()  # stored; its lease and the unacknowledged page are left behind
    assert len(texts(rig)) == 2
    assert len(rig.unacknowledged()) == 2
    restarted = rig.poller(await rig.storage())  # another process on the same database
    rig.start(restarted)
    await eventually(lambda: not rig.unacknowledged(), within=10)
    assert texts(rig) == ["/rate 494 5 a", "/rate 495 4 b"]  # each vote once


async def test_malformed_and_unhandled_events_are_acknowledged_past_and_counted(
    rig: Rig,
) -> None:
    assert rig.bot_id is not None
    queue, now = rig.portal.queue_of(rig.bot_id), rig.portal.now()
    queue.push(QueuedEvent(rig.portal.new_id(), "ONIMBOTV2COMMANDADD", now, {"bot": "x"}))
    queue.push(QueuedEvent(rig.portal.new_id(), "ONIMBOTV2REACTIONCHANGE", now, {}))
    await rig.say(27, GROUP, "/rate 494 5")
    metrics = Metrics()
    rig.start(rig.poller(await rig.storage(), metrics=metrics))
    await eventually(lambda: texts(rig) and not rig.unacknowledged())
    assert texts(rig) == ["/rate 494 5"]
    assert sample(metrics, "bot_events_rejected_total", reason="malformed_event") == 1
    assert sample(metrics, "bot_events_fetched_total", type="ONIMBOTV2COMMANDADD") == 2
    assert sample(metrics, "bot_events_fetched_total", type="ONIMBOTV2REACTIONCHANGE") == 1


async def test_a_locked_database_acknowledges_nothing_and_the_page_is_stored_later(
    rig: Rig,
) -> None:
    poller = rig.poller(await rig.storage(), tuning=dataclasses.replace(FAST_POLL, lease=60.0))
    rig.start(poller)
    await eventually(lambda: poller.status().state == "active")
    with write_locked(rig.url()):
        await rig.say(27, GROUP, "/rate 494 5")
        await eventually(lambda: poller.status().problem == "storage_error", within=30)
        assert len(rig.unacknowledged()) == 1
    await eventually(lambda: texts(rig) and not rig.unacknowledged(), within=30)
    assert texts(rig) == ["/rate 494 5"]


async def test_a_full_queue_acknowledges_nothing_and_loses_nothing(rig: Rig) -> None:
    storage = await rig.storage()
    poller = rig.poller(storage, queue_limit=1)
    rig.start(poller)
    await rig.say(27, GROUP, "/rate 494 5")
    await rig.say(1, GROUP, "/rate 495 4")
    await eventually(lambda: poller.status().problem == "queue_full")
    assert texts(rig) == ["/rate 494 5"]
    assert len(rig.unacknowledged()) == 2
    job = await storage.claim(time.time())  # a worker finishes the first job
    assert job is not None
    await storage.finish(job.key, entry(job.key, time.time()))
    await eventually(lambda: len(texts(rig)) == 2 and not rig.unacknowledged())
    assert texts(rig) == ["/rate 494 5", "/rate 495 4"]


async def test_while_shutting_down_nothing_is_stored_or_acknowledged(rig: Rig) -> None:
    accepting = False
    poller = rig.poller(await rig.storage(), accepting=lambda: accepting)
    rig.start(poller)
    await rig.say(27, GROUP, "/rate 494 5")
    await eventually(lambda: poller.status().problem == "shutting_down")
    assert (texts(rig), len(rig.unacknowledged())) == ([], 1)
    accepting = True  # the next start
    await eventually(lambda: texts(rig) and not rig.unacknowledged())
    assert texts(rig) == ["/rate 494 5"]


async def test_one_user_over_their_share_does_not_hold_back_anyone_else(rig: Rig) -> None:
    rig.start(rig.poller(await rig.storage(), user_share=1))
    await rig.say(27, GROUP, "/rate 494 5")
    await rig.say(27, GROUP, "/rate 495 4")  # over 27's share: dropped, as webhook mode's 503
    await rig.say(1, GROUP, "/rate 496 3")
    await eventually(lambda: len(texts(rig)) == 2 and not rig.unacknowledged())
    assert texts(rig) == ["/rate 494 5", "/rate 496 3"]


# ---- the bot gone ---------------------------------------------------------------------------


async def _delete_in_portal(rig: Rig) -> str:
    assert rig.bot_id is not None
    await rig.sandbox.app[EVENTS].delete_bot(rig.bot_id)
    return TOKEN


async def _queue_delete_event(rig: Rig) -> str:
    assert rig.bot_id is not None
    bot = rig.portal.bots[rig.bot_id]
    data = {"bot": {"id": bot.id, "code": bot.code}}
    rig.portal.queue_of(bot.id).push(
        QueuedEvent(rig.portal.new_id(), "ONIMBOTV2DELETE", rig.portal.now(), data)
    )
    return TOKEN


async def _another_application(_rig: Rig) -> str:
    return "tok-someone-else"  # BOT_OWNERSHIP_ERROR: the bot is not this token's


@pytest.mark.parametrize(
    "gone",
    [_delete_in_portal, _queue_delete_event, _another_application],
    ids=lambda gone: str(gone.__name__),
)
async def test_a_missing_bot_is_reported_and_the_poller_waits_for_a_new_one(
    rig: Rig, gone: Callable[[Rig], Any], logs: list[MutableMapping[str, Any]]
) -> None:
    old = rig.bot_id
    token = await gone(rig)
    poller = rig.poller(await rig.storage(), token=token)
    rig.start(poller)
    await eventually(lambda: rig.missing)
    assert rig.missing == [old]
    assert poller.status().state == "waiting"
    gets = rig.event_gets()
    await asyncio.sleep(FAST_POLL.idle * 3)
    assert rig.event_gets() == gets  # no fetch for a bot that is gone
    assert "fetch.bot_missing" in [e["event"] for e in logs]
    assert token not in repr(logs)  # the bot token is a secret


async def test_after_the_bot_is_registered_again_its_commands_are_stored(rig: Rig) -> None:
    poller = rig.poller(await rig.storage())
    rig.start(poller)
    await _delete_in_portal(rig)
    await eventually(lambda: rig.missing)
    rig.bot_id = await register_v2(rig.http, rig.sandbox, isSupportOpenline=True)
    await register_rate(rig.http, rig.sandbox, rig.bot_id)
    await rig.say(27, GROUP, "/rate 494 5")
    await eventually(lambda: texts(rig) and not rig.unacknowledged())
    assert texts(rig) == ["/rate 494 5"]


# ---- one consumer per bot -----------------------------------------------------------------


@pytest.mark.parametrize("first_goes", ["stopped", "killed"])
async def test_two_pollers_on_one_database_one_consumes_the_other_takes_over(
    rig: Rig, first_goes: str, logs: list[MutableMapping[str, Any]]
) -> None:
    tuning = dataclasses.replace(FAST_POLL, lease=3.0)  # outlasts a slow start of the second
    first = rig.poller(await rig.storage(), tuning=tuning)
    await first.step()  # holds the lease
    if first_goes == "stopped":
        rig.start(first)
    second = rig.poller(await rig.storage(), tuning=tuning)
    rig.start(second)
    await eventually(lambda: second.status().state == "passive")
    await asyncio.sleep(FAST_POLL.idle * 3)
    assert (second.status().state, second.status().reason) == ("passive", "another_instance")
    assert [e["event"] for e in logs].count("fetch.passive") == 1  # said once
    if first_goes == "stopped":
        await rig.stop(first)  # the lease is released
    # killed: the lease runs out
    await eventually(lambda: second.status().state == "active", within=20)
    await rig.say(27, GROUP, "/rate 494 5")
    await eventually(lambda: texts(rig) and not rig.unacknowledged())
    assert texts(rig) == ["/rate 494 5"]


async def test_a_consumer_on_another_database_is_noticed_and_taken_over_when_silent(
    rig: Rig, logs: list[MutableMapping[str, Any]]
) -> None:
    """[UNCONFIRMED signal: see `FetchPoller._is_foreign`.] The other consumer acknowledges
    beyond our offset; we go passive and take over once its events stay unacknowledged."""
    ours, theirs = rig.poller(await rig.storage("ours")), rig.poller(await rig.storage("theirs"))
    await rig.say(27, GROUP, "/rate 494 5")
    await ours.step()
    await theirs.step()  # both fetched it before anyone acknowledged: the one unavoidable overlap
    await rig.say(27, GROUP, "/rate 495 4")
    await theirs.step()  # acknowledges 494, fetches 495
    await theirs.step()  # acknowledges 495
    await ours.step()  # our offset is behind what the portal acknowledged
    assert (ours.status().state, ours.status().reason) == ("passive", "foreign_consumer")
    assert "fetch.foreign_consumer" in [e["event"] for e in logs]
    await ours.step()  # a peek: nothing waits, so the other consumer is alive
    assert ours.status().state == "passive"
    # The other consumer is gone: a command typed a while ago is still unacknowledged.
    rig.portal.advance_clock(-FAST_POLL.foreign_takeover - 1)
    await rig.say(27, GROUP, "/rate 496 3")
    rig.portal.advance_clock(FAST_POLL.foreign_takeover + 1)
    await ours.step()
    assert ours.status().state == "active"
    await ours.step()
    assert texts(rig, "ours") == ["/rate 494 5", "/rate 496 3"]
    assert texts(rig, "theirs") == ["/rate 494 5", "/rate 495 4"]
    # Having been wrong once (or the other one gone), the signal is not obeyed again: a
    # portal whose cursor means something else must not keep the bot silent.
    assert "fetch.foreign_signal_ignored" in [e["event"] for e in logs]
    await rig.say(27, GROUP, "/rate 495 2")
    await theirs.step()
    await theirs.step()  # acknowledges beyond our offset again
    await ours.step()
    assert ours.status().state == "active"


# ---- budget, batch, visible state ---------------------------------------------------------


async def test_an_idle_poller_stays_within_its_share_of_the_rate(rig: Rig) -> None:
    tuning = dataclasses.replace(FAST_POLL, rate=20.0, budget_share=0.25)  # at most 5/s
    poller = rig.poller(await rig.storage(), tuning=tuning)
    rig.start(poller)
    await eventually(lambda: rig.event_gets() > 0)
    loop = asyncio.get_running_loop()
    started, before = loop.time(), rig.event_gets()
    await asyncio.sleep(2.0)
    window, polls = loop.time() - started, rig.event_gets() - before
    # An upper bound only: a slow machine polls less.
    assert polls <= window * tuning.rate * tuning.budget_share + 1


@pytest.mark.parametrize("coalesced", [False, True], ids=["direct", "coalesced"])
async def test_an_idle_poller_writes_no_info_line_per_poll(
    rig: Rig, coalesced: bool, logs: list[MutableMapping[str, Any]]
) -> None:
    """An on-call engineer reads the log at info: an idle service polls every 2 s, a line
    per poll would bury everything else (86,400 lines a day); a command still shows."""
    coalescer = Coalescer(rig.client, rig.client.limiter) if coalesced else None
    try:
        poller = rig.poller(await rig.storage(), rest=coalescer)
        rig.start(poller)
        await eventually(lambda: rig.event_gets() >= 5)
        await rig.stop(poller)
    finally:
        if coalescer is not None:
            await coalescer.close()
    loud = [e["event"] for e in logs if e["log_level"] != "debug"]
    assert loud == ["fetch.state", "fetch.state"]  # active, then stopped


async def test_under_load_event_get_travels_inside_shared_batch_requests(rig: Rig) -> None:
    coalescer = Coalescer(rig.client, rig.client.limiter)
    try:
        rig.start(rig.poller(await rig.storage(), rest=coalescer))

        def shared() -> bool:
            for call in rig.portal.calls:
                commands = [str(c) for c in call.params.get("cmd", {}).values()]
                gets = [c for c in commands if c.startswith(EVENT_GET)]
                if call.method == "batch" and gets and len(gets) < len(commands):
                    return True
            return False

        deadline = asyncio.get_running_loop().time() + 10
        while not shared():  # concurrent work: Event.get joins it
            assert asyncio.get_running_loop().time() < deadline, "never shared a batch"
            await asyncio.gather(*(coalescer.call("imbot.v2.Revision.get") for _ in range(5)))
        direct = [c for c in rig.portal.calls if c.method == RECORDED_GET and not c.batch_of]
        assert direct == []
    finally:
        await coalescer.close()


async def test_status_and_metrics_show_the_poller(rig: Rig) -> None:
    metrics = Metrics()
    late = 120.0  # the poller's clock runs ahead: every event looks two minutes old
    poller = rig.poller(await rig.storage(), metrics=metrics, clock=lambda: time.time() + late)
    assert poller.status().since_success is None
    rig.start(poller)
    await rig.say(27, GROUP, "/rate 494 5")
    await eventually(lambda: texts(rig) and not rig.unacknowledged())
    status = poller.status()
    assert (status.state, status.problem) == ("active", "")
    assert status.since_success is not None
    assert 0 <= status.since_success < 60
    assert sample(metrics, "bot_fetch_active") == 1
    assert sample(metrics, "bot_fetch_lag_seconds_count") >= 1
    assert sample(metrics, "bot_fetch_lag_seconds_sum") >= late
    assert 0 <= sample(metrics, "bot_poll_interval_seconds") <= FAST_POLL.idle
    await rig.stop(poller)
    assert poller.status().state == "stopped"
    assert sample(metrics, "bot_fetch_active") == 0


@pytest.mark.parametrize(
    ("rate", "share", "target", "warned"),
    [
        (2.0, 0.25, 3.0, False),  # the defaults: idle 2 s, p95 2.4 s
        (2.0, 0.1, 3.0, True),  # idle 5 s: the budget wins over the answer target
    ],
)
async def test_a_budget_that_cannot_meet_the_answer_target_is_warned_about_once(
    rig: Rig,
    logs: list[MutableMapping[str, Any]],
    rate: float,
    share: float,
    target: float,
    warned: bool,
) -> None:
    tuning = PollTuning(rate=rate, budget_share=share, answer_target=target)
    poller = rig.poller(await rig.storage(), tuning=tuning)
    rig.start(poller)
    await eventually(lambda: rig.event_gets() > 0)
    await rig.stop(poller)
    warnings = [e for e in logs if e["event"] == "fetch.budget_over_latency"]
    assert len(warnings) == int(warned)
    if warned:
        assert (warnings[0]["idle_interval_s"], warnings[0]["answer_target_s"]) == (5.0, 3.0)


@pytest.mark.parametrize(
    ("rate", "share", "target"), [(0.0, 0.25, 3.0), (2.0, 0.0, 3.0), (2.0, 1.5, 3.0), (2, 0.25, 0)]
)
def test_a_tuning_that_allows_no_polling_is_refused(
    rate: float, share: float, target: float
) -> None:
    with pytest.raises(ValueError, match="positive"):
        PollTuning(rate=rate, budget_share=share, answer_target=target)
