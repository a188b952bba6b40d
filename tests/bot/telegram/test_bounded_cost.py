"""What one message, one member and many strangers can cost, attacked over HTTP through the fake
Bot API: a flood is cut at its author's share and holds up nobody else, a message of command
lines is at most ten jobs, strangers in the private chat add a bounded number of jobs."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from bot.intake import MAX_COMMANDS_PER_MESSAGE
from bot.sandbox.telegram.world import TelegramWorld, TgUser
from bot.state import SETTINGS
from bot.telegram.side import TELEGRAM
from bot.telegram.strangers import PER_MINUTE, PER_USER
from tests.bot.telegram.conftest import GROUP, LINKED, STRANGER, Service, Start
from tests.harness import eventually, job_rows

SHARE = 50  # TelegramTuning.user_share: one person's unfinished commands


async def started(start: Start, mode: str) -> Service:
    service = await start(TELEGRAM_MODE=mode)
    await eventually(lambda: service.app[TELEGRAM].status()["state"] == mode)
    service.core.gate.clear()  # jobs stay unfinished: what is stored is what is seen
    return service


def stored(service: Service) -> list[str]:
    return [text for text, *_ in job_rows(service.app[SETTINGS].bot_database_url)]


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_one_members_flood_is_cut_at_their_share_and_holds_up_nobody_else(
    start: Start, telegram_world: TelegramWorld, mode: str
) -> None:
    service = await started(start, mode)
    for n in range(1, SHARE + 6):
        telegram_world.type(LINKED, GROUP, f"/rate {n} 5")
    telegram_world.type(5002, GROUP, "/rate 999 4")  # another member, after the flood
    await eventually(lambda: "/rate 999 4" in stored(service), within=20)
    assert len([t for t in stored(service) if t != "/rate 999 4"]) == SHARE
    assert telegram_world.updates == []  # the excess was taken and dropped, not refused
    service.core.gate.set()


async def test_a_message_of_4096_characters_of_command_lines_is_at_most_ten_jobs(
    start: Start, telegram_world: TelegramWorld
) -> None:
    service = await started(start, "polling")
    text = ("/rate 1 5\n" * 410)[:4096]
    telegram_world.type(LINKED, GROUP, text)
    jobs = await eventually(lambda: stored(service))
    assert jobs == ["/rate 1 5"] * MAX_COMMANDS_PER_MESSAGE + [""]  # and one notice
    service.core.gate.set()


async def test_one_stranger_in_the_private_chat_costs_a_bounded_number_of_jobs(
    start: Start, telegram_world: TelegramWorld
) -> None:
    service = await started(start, "polling")
    with capture_logs() as logs:
        for _ in range(PER_USER + 5):
            telegram_world.type(STRANGER, STRANGER, "/help")
        telegram_world.type(LINKED, LINKED, "/help")  # a linked user: not gated
        await eventually(lambda: len(stored(service)) == PER_USER + 1)
        await eventually(lambda: telegram_world.updates == [])
    assert len(stored(service)) == PER_USER + 1
    dropped = [e for e in logs if e["event"] == "telegram.stranger_dropped"]
    assert len(dropped) == 5
    service.core.gate.set()


async def test_many_strangers_in_the_private_chat_add_a_bounded_number_of_jobs(
    start: Start, telegram_world: TelegramWorld
) -> None:
    service = await started(start, "polling")
    strangers = range(600_001, 600_001 + PER_MINUTE + 10)
    for user_id in strangers:
        telegram_world.add_user(TgUser(user_id, "Кто-то", language_code="en"))
        telegram_world.type(user_id, user_id, "/start")
    await eventually(lambda: telegram_world.updates == [], within=20)
    assert len(stored(service)) == PER_MINUTE
    service.core.gate.set()
