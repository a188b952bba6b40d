"""The Telegram side when Telegram misbehaves, as an engineer on call sees it: a second poller
on the same token, the Bot API unreachable, 429 storms and a bot removed from its chats."""

from __future__ import annotations

import asyncio
import logging

import pytest
from structlog.testing import capture_logs

from bot.sandbox.telegram.world import TelegramWorld, TgFault
from bot.telegram.side import TELEGRAM
from tests.bot.telegram.conftest import GROUP, LINKED, Start
from tests.harness import eventually


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
