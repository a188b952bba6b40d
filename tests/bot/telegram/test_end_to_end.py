"""Issue 10's "Done when", end to end: the whole service — its Bitrix24 side against the sandbox
portal, its Telegram side against the sandbox's fake Bot API, both over real HTTP, aiogram
real: a linked supervisor rates in the allowed group and is answered there, in polling and in
webhook mode; every saved vote reaches the feed chat once; the link flow across both sides."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer

from bot.app import Tuning
from bot.sandbox.telegram.seed import FEED, SUPERVISORS_GROUP, TOKEN
from bot.sandbox.telegram.world import TelegramWorld
from bot.telegram.side import TELEGRAM
from tests.harness import FAST, Service, ServiceFactory, eventually, telegram_api_url

SVETLANA = 5001  # Telegram; the portal's supervisor 27
STRANGER = 5009


async def start_both(
    start_service: ServiceFactory,
    sandbox: TestServer,
    mode: str,
    *,
    tuning: Tuning = FAST,
    **env: str,
) -> Service:
    service = await start_service(
        tuning=tuning,
        **{
            "B24_EVENT_MODE": "fetch",
            "B24_RATE_LIMIT": "50",
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_URL": telegram_api_url(sandbox),
            "TELEGRAM_MODE": mode,
            "TELEGRAM_WEBHOOK_SECRET": "w3bh00k-s3cret-value",
            "TELEGRAM_ALLOWED_CHAT_IDS": str(SUPERVISORS_GROUP),
            "TELEGRAM_FEED_CHAT_ID": str(FEED),
        }
        | env,
    )
    await eventually_ready(service)
    return service


async def eventually_ready(service: Service) -> None:
    side = service.server.app[TELEGRAM]
    await eventually(lambda: side.status()["state"] in ("polling", "webhook"), within=10)


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_a_linked_supervisor_rates_in_the_group_and_every_vote_reaches_the_feed(
    start_service: ServiceFactory, sandbox: TestServer, telegram_world: TelegramWorld, mode: str
) -> None:
    service = await start_both(start_service, sandbox, mode, TELEGRAM_USER_MAP=f"{SVETLANA}:27")
    telegram_world.type(SVETLANA, SUPERVISORS_GROUP, "/rate 494 5 Молодец")
    [answer] = await eventually(
        lambda: telegram_world.messages_from_bot(SUPERVISORS_GROUP), within=10
    )
    session = service.portal.sessions[494]
    assert (session.vote_head, session.comment_head) == (5, "Молодец")
    assert answer.startswith("✅ Сохранено. Сессия 494")
    # A vote typed in Bitrix24 reaches the feed too; each saved vote once.
    await service.reply_to(27, service.bot_id, "/rate 495 3 Из Битрикса")
    await eventually(lambda: len(telegram_world.messages_from_bot(FEED)) == 2, within=10)
    first, second = telegram_world.messages_from_bot(FEED)
    assert ("494" in first, "Молодец" in first) == (True, True)
    assert ("495" in second, "Из Битрикса" in second) == (True, True)


async def test_linking_from_bitrix24_to_telegram_then_rating_then_unlinking(
    start_service: ServiceFactory, sandbox: TestServer, telegram_world: TelegramWorld
) -> None:
    service = await start_both(start_service, sandbox, "polling")
    # Not linked yet: the instructions, and nothing saved.
    telegram_world.type(SVETLANA, SUPERVISORS_GROUP, "/rate 494 4 Рано")
    [refusal] = await eventually(
        lambda: telegram_world.messages_from_bot(SUPERVISORS_GROUP), within=10
    )
    assert "/link" in refusal
    assert service.portal.sessions[494].vote_head == 0
    # /link in Bitrix24 gives a code and the deep link; /start <code> in Telegram links.
    offer = await service.reply_to(27, service.bot_id, "/link")
    assert "https://t.me/SandboxRatingBot?start=" in offer.text
    code = offer.text.split("?start=", 1)[1].split()[0].strip(".,)")
    telegram_world.type(SVETLANA, SVETLANA, f"/start {code}")
    await eventually(lambda: telegram_world.messages_from_bot(SVETLANA), within=10)
    assert "27" in telegram_world.messages_from_bot(SVETLANA)[-1]
    # Linked: the vote is saved and answered in the group.
    telegram_world.type(SVETLANA, SUPERVISORS_GROUP, "/rate 494 4 Теперь можно")
    await eventually(
        lambda: len(telegram_world.messages_from_bot(SUPERVISORS_GROUP)) == 2, within=10
    )
    assert service.portal.sessions[494].vote_head == 4
    # The code was used once: a stranger cannot reuse it.
    telegram_world.type(STRANGER, STRANGER, f"/start {code}")
    await eventually(lambda: telegram_world.messages_from_bot(STRANGER), within=10)
    assert "27" not in telegram_world.messages_from_bot(STRANGER)[-1]
    # /unlink in Telegram undoes it: the next vote is refused again.
    telegram_world.type(SVETLANA, SVETLANA, "/unlink")
    await eventually(lambda: len(telegram_world.messages_from_bot(SVETLANA)) == 2, within=10)
    telegram_world.type(SVETLANA, SUPERVISORS_GROUP, "/rate 494 1 После отвязки")
    await eventually(
        lambda: len(telegram_world.messages_from_bot(SUPERVISORS_GROUP)) == 3, within=10
    )
    assert service.portal.sessions[494].vote_head == 4
