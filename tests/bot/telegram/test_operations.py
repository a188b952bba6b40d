"""The Telegram side when Telegram misbehaves, as an engineer on call sees it: a second poller
on the same token, the Bot API unreachable, 429 storms and a bot removed from its chats."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import pytest
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from bot.jobs import RetryRules
from bot.sandbox.telegram.seed import FEED
from bot.sandbox.telegram.world import TelegramWorld, TgCall, TgFault
from bot.telegram.side import TELEGRAM
from tests.bot.telegram.conftest import GROUP, LINKED, Start, from_bot
from tests.bot.telegram.test_end_to_end import start_both
from tests.bot.telegram.test_replies import due_of
from tests.harness import FAST, ServiceFactory, eventually

# The service's quick test tuning, with replies kept trying for longer than a storm lasts.
PATIENT = dataclasses.replace(
    FAST, jobs=RetryRules(first_wait=0.05, longest_wait=30.0, give_up_after=600.0)
)


async def test_a_second_poller_is_reported_once_and_no_update_is_handled_twice(
    start: Start, telegram_world: TelegramWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """Two processes poll with one token and one database (a second start by mistake): they
    end each other's long polls with 409 for as long as both run."""
    caplog.set_level(logging.INFO)
    with capture_logs() as logs:
        first = await start()
        await eventually(lambda: first.app[TELEGRAM].state == "polling", within=10)
        second = await start()
        both = (first.app[TELEGRAM], second.app[TELEGRAM])
        await eventually(lambda: all(side.state == "conflict" for side in both), within=10)
        typed = [telegram_world.type(LINKED, GROUP, f"/rate {n} 5") for n in range(1, 7)]

        def seen() -> list[str]:
            return [job.key for service in (first, second) for job in service.core.seen]

        await eventually(lambda: len(seen()) >= len(typed), within=15)
        await eventually(lambda: not telegram_world.updates, within=10)
        assert [side.status()["detail"] for side in both] == [
            "another poller uses this bot token"
        ] * 2
    assert sorted(seen()) == sorted(f"tg:{u['update_id']}:0" for u in typed if u is not None)
    conflicts = [e for e in logs if e["event"] == "telegram.state" and e["state"] == "conflict"]
    assert len(conflicts) == len(both)  # once each, however often they took turns
    assert not [
        r
        for r in caplog.records
        if r.name == "aiogram.dispatcher" and r.levelno >= logging.WARNING
    ]


async def test_a_webhook_set_by_another_instance_is_named_as_the_conflict(
    start: Start, telegram_world: TelegramWorld
) -> None:
    """getUpdates answers 409 while a webhook is set: not a second poller, and polling does
    not fight the other instance by deleting its webhook."""
    service = await start()
    side = service.app[TELEGRAM]
    await eventually(lambda: side.state == "polling", within=10)
    telegram_world.webhook.url = "http://127.0.0.1:9/telegram/webhook"  # nobody listens there
    telegram_world.notify()
    status = await eventually(lambda: side.status() if side.state == "conflict" else None)
    assert (
        status["detail"]
        == "a webhook is set for this bot token (another instance in webhook mode?)"
    )
    assert telegram_world.webhook.url


@pytest.mark.parametrize(
    ("fault", "shown"),
    [
        (TgFault("getUpdates", times=-1, status=500), "TelegramServerError"),
        # A proxy in front of the Bot API answering its own page.
        (
            TgFault("getUpdates", times=-1, status=502, body="<html>Bad Gateway</html>"),
            "ClientDecodeError",
        ),
        (
            TgFault("getUpdates", times=-1, status=401, description="Unauthorized"),
            "TelegramUnauthorizedError",
        ),
    ],
)
async def test_a_failing_bot_api_mid_run_is_shown_and_polling_resumes_when_it_recovers(
    start: Start,
    telegram_world: TelegramWorld,
    caplog: pytest.LogCaptureFixture,
    fault: TgFault,
    shown: str,
) -> None:
    caplog.set_level(logging.INFO)
    service = await start()
    side = service.app[TELEGRAM]
    await eventually(lambda: side.state == "polling", within=10)
    with capture_logs() as logs:
        telegram_world.faults.append(fault)
        telegram_world.notify()  # the long poll in flight ends; the next one fails
        typed = telegram_world.type(LINKED, GROUP, "/rate 494 5")
        status = await eventually(lambda: side.status() if side.state == "failing" else None)
        assert status == {"mode": "polling", "state": "failing", "detail": shown}
        await asyncio.sleep(1.0)
        telegram_world.faults.clear()
        await eventually(lambda: service.core.seen, within=10)
        await eventually(lambda: side.state == "polling", within=10)
    assert typed is not None
    assert [job.key for job in service.core.seen] == [f"tg:{typed['update_id']}:0"]
    states = [e["state"] for e in logs if e["event"] == "telegram.state"]
    assert states == ["failing", "polling"]
    assert not [
        r for r in caplog.records if r.name.startswith("aiogram") and r.levelno >= logging.WARNING
    ]


async def test_in_a_429_storm_bitrix24_goes_on_and_each_reply_goes_once_when_it_clears(
    start_service: ServiceFactory, sandbox: TestServer, telegram_world: TelegramWorld
) -> None:
    """Telegram answers 429 to every sendMessage for a while: the two workers are not held by
    Telegram's replies (Bitrix24 commands are answered meanwhile), the held replies do not
    ask again before Telegram's wait is over, and each goes once when the storm ends."""
    storm = TgFault("sendMessage", times=10_000, status=429, retry_after=2)
    telegram_world.faults.append(storm)
    service = await start_both(
        start_service, sandbox, "polling", tuning=PATIENT, TELEGRAM_USER_MAP=f"{LINKED}:27"
    )
    for session in (494, 495, 496):
        telegram_world.type(LINKED, GROUP, f"/rate {session} 5 В шторм")
    await eventually(lambda: service.votes() == 3, within=10)  # feed lines queued too
    for session in (494, 495, 496):  # Bitrix24 meanwhile: answered at once
        answer = await service.reply_to(27, service.bot_id, f"/rate {session} 4 Из Битрикса")
        assert answer.text.startswith("✅")
    await asyncio.sleep(5.0)  # the storm goes on: two or three of Telegram's waits
    asked = 10_000 - storm.times
    # One try per chat (the group, the feed) per wait, and the first tries: not one per reply.
    assert asked <= 2 * (5 // 2 + 2)
    telegram_world.faults.clear()
    await eventually(lambda: len(telegram_world.messages_from_bot(GROUP)) == 3, within=15)
    await eventually(lambda: len(telegram_world.messages_from_bot(FEED)) == 6, within=15)
    await asyncio.sleep(1.0)  # a doubled reply would show by now
    assert len(telegram_world.messages_from_bot(GROUP)) == 3
    assert len(telegram_world.messages_from_bot(FEED)) == 6


async def test_a_429_after_an_outage_waits_telegrams_time_not_the_outages_growing_wait(
    start: Start, telegram_world: TelegramWorld
) -> None:
    """Six failed tries grew the queue's wait to 3.2 s here (minutes in production, after a
    long storm); Telegram then says one second, and one second it is."""
    telegram_world.faults += [
        TgFault("sendMessage", times=6, status=502),
        TgFault("sendMessage", status=429, retry_after=1),
    ]
    service = await start()
    telegram_world.type(LINKED, GROUP, "/rate 494 5")
    due = await eventually(lambda: due_of(service, "too_many_requests"), within=15)
    assert due - time.time() <= 1.1
    await eventually(lambda: from_bot(telegram_world, GROUP), within=10)


async def test_a_bot_removed_from_the_feed_and_the_group_still_saves_and_answers_elsewhere(
    start_service: ServiceFactory, sandbox: TestServer, telegram_world: TelegramWorld
) -> None:
    service = await start_both(start_service, sandbox, "polling", TELEGRAM_USER_MAP=f"{LINKED}:27")
    telegram_world.remove_bot(FEED)
    with capture_logs() as logs:
        telegram_world.type(LINKED, GROUP, "/rate 494 5 Без ленты")
        await eventually(lambda: telegram_world.messages_from_bot(GROUP), within=10)
        # Typed, then the bot is removed from the group before its answer could go.
        telegram_world.faults.append(TgFault("sendMessage", times=-1, status=502))
        telegram_world.type(LINKED, GROUP, "/rate 495 2 Без группы")
        await eventually(lambda: service.votes() == 2, within=10)
        telegram_world.remove_bot(GROUP)
        telegram_world.faults.clear()
        answer = await service.reply_to(27, service.bot_id, "/rate 496 3 Из Битрикса")
        assert answer.text.startswith("✅")
        await eventually(lambda: len(forbidden(telegram_world)) == 4, within=15)
        await asyncio.sleep(2.0)  # a retry would show by now
    assert [service.portal.sessions[s].vote_head for s in (494, 495, 496)] == [5, 2, 3]
    assert len(forbidden(telegram_world)) == 4  # three feed lines and one answer, once each
    assert telegram_world.messages_from_bot(FEED) == []
    ended = [e for e in logs if e["event"] == "command.handled" and not e["delivered"]]
    assert len(ended) == 4
    assert len([e for e in logs if e["event"] == "telegram.forbidden"]) == 4


def forbidden(world: TelegramWorld) -> list[TgCall]:
    return [c for c in world.calls if c.method == "sendmessage" and c.status == 403]


async def test_a_429_asking_for_a_day_holds_the_chat_no_longer_than_the_queues_longest_wait(
    start: Start, telegram_world: TelegramWorld
) -> None:
    telegram_world.faults.append(TgFault("sendMessage", status=429, retry_after=86_400))
    await start()
    telegram_world.type(LINKED, GROUP, "/rate 494 5")
    await eventually(lambda: not telegram_world.faults, within=10)
    # The queue's longest wait here is 5 s: the reply goes then, not tomorrow.
    (sent,) = await eventually(lambda: from_bot(telegram_world, GROUP), within=15)
    assert sent.text == "✅ Saved. 494: 5"


async def test_a_bot_api_that_never_answers_holds_no_worker_from_bitrix24_for_long(
    start_service: ServiceFactory, sandbox: TestServer, telegram_world: TelegramWorld
) -> None:
    """Telegram's replies hang (packets dropped): the two workers are each on one for at
    most the reply's timeout (10 s), not aiogram's 60 s, and Bitrix24's command goes next."""
    service = await start_both(
        start_service, sandbox, "polling", tuning=PATIENT, TELEGRAM_USER_MAP=f"{LINKED}:27"
    )
    telegram_world.faults.append(TgFault("sendMessage", times=-1, hang=True))
    telegram_world.type(LINKED, GROUP, "/rate 494 5 В пустоту")
    await eventually(lambda: service.votes() == 1, within=10)  # its answer and feed line hang
    await service.say(27, service.bot_id, "/rate 495 4 Из Битрикса")
    await eventually(service.bot_messages, within=30)
    telegram_world.faults.clear()
    await eventually(lambda: telegram_world.messages_from_bot(GROUP), within=30)
