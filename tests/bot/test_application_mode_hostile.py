"""Application mode (issue 12) attacked as a hostile portal user would: each finding is written
down here as the attack it was, over HTTP against the sandbox (the service's own tests of the
flow are in test_application_mode.py)."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.sandbox.portal import Message, Portal
from bot.sandbox.telegram.seed import SUPERVISORS_GROUP, TOKEN
from bot.sandbox.telegram.world import TelegramWorld
from bot.state import CORE
from tests.bot.telegram.test_end_to_end import eventually_ready
from tests.bot.test_application_mode import (
    allow,
    ask,
    link_of,
    link_of_or_none,
    start_app_mode,
    votes_by,
)
from tests.harness import Service, ServiceFactory, drained, eventually, telegram_api_url

SVETLANA = 5001  # Telegram; the portal's supervisor 27
GROUP_CHAT = "chat2001"  # the portal's group chat of the heads (1, 27, 28)


async def test_logout_voids_the_links_already_given(
    http: aiohttp.ClientSession,
    start_service: ServiceFactory,
    sandbox: TestServer,
    portal: Portal,
) -> None:
    """A supervisor asks, thinks better of it and says /logout: the link they were given
    (still in the chat, where it may be clicked later or by a helpful colleague at their
    desk) no longer completes the abandoned vote."""
    service, _ = await start_app_mode(start_service, sandbox, portal)
    prompt = await ask(service, 27, "/rate 494 1 Передумала")
    await ask(service, 27, "/logout")
    status, page = await allow(http, link_of(prompt), 27)
    assert status == 400
    assert "устарела или уже использована" in page
    await drained(service)
    assert votes_by(portal) == []
    assert portal.sessions[494].vote_head == 0


async def test_a_comment_with_batch_syntax_is_saved_as_written_under_the_supervisor_s_token(
    http: aiohttp.ClientSession,
    start_service: ServiceFactory,
    sandbox: TestServer,
    portal: Portal,
) -> None:
    service, _ = await start_app_mode(start_service, sandbox, portal)
    comment = "$result[call][ID] $error[x] [b]жирно[/b]"
    prompt = await ask(service, 27, f"/rate 494 5 {comment}")
    assert (await allow(http, link_of(prompt), 27))[0] == 200
    await eventually(lambda: portal.sessions[494].vote_head == 5)
    assert portal.sessions[494].comment_head == comment
    assert votes_by(portal) == [(27, "token")]


def links_in(messages: list[Message]) -> list[str]:
    return [str(link) for m in messages if (link := link_of_or_none(m))]


async def test_the_link_is_not_posted_in_a_bitrix24_group_chat(
    http: aiohttp.ClientSession, start_service: ServiceFactory, sandbox: TestServer, portal: Portal
) -> None:
    """Another head in the group would see the link: clicking it as themselves is refused,
    but it spends the state and the waiting vote is lost; so it goes to the private chat,
    and the vote, once allowed there, is answered in the group as usual."""
    service, _ = await start_app_mode(start_service, sandbox, portal)
    await service.say(27, GROUP_CHAT, "/rate 494 5 Из группы")
    [private] = await eventually(
        lambda: links_in(service.bot_messages(portal.private_chat(27, service.bot_id).id))
    )
    [told] = service.bot_messages(2001)
    assert "личный чат" in told.text
    assert not link_of_or_none(told)
    assert (await allow(http, private, 27))[0] == 200
    await eventually(lambda: len(service.bot_messages(2001)) == 2)
    assert "Сессия 494: ★★★★★ 5/5" in service.bot_messages(2001)[-1].text
    assert votes_by(portal) == [(27, "token")]
    audit = await service.server.app[CORE].storage.audit()
    assert all(private not in entry.reply for entry in audit)


async def start_with_telegram(
    start_service: ServiceFactory, sandbox: TestServer, portal: Portal
) -> Service:
    service, _ = await start_app_mode(
        start_service,
        sandbox,
        portal,
        B24_EVENT_MODE="fetch",
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=telegram_api_url(sandbox),
        TELEGRAM_MODE="polling",
        TELEGRAM_ALLOWED_CHAT_IDS=str(SUPERVISORS_GROUP),
    )
    await eventually_ready(service)
    return service


async def link_telegram(service: Service, world: TelegramWorld) -> None:
    """Светлана links her Telegram account to Bitrix24 user 27 (/link, then /start <code>)."""
    offer = await service.reply_to(27, service.bot_id, "/link")
    code = offer.text.split("?start=", 1)[1].split()[0].strip(".,)")
    before = len(world.messages_from_bot(SVETLANA))
    world.type(SVETLANA, SVETLANA, f"/start {code}")
    await eventually(lambda: len(world.messages_from_bot(SVETLANA)) > before, within=10)


def telegram_links(world: TelegramWorld, chat_id: int) -> list[str]:
    return [
        str(b["url"])
        for m in world.messages.values()
        if m.sender_id == world.bot.id and m.chat_id == chat_id
        for b in m.buttons()
        if b.get("url")
    ]


async def test_the_link_is_not_posted_in_a_telegram_group(
    start_service: ServiceFactory,
    sandbox: TestServer,
    portal: Portal,
    telegram_world: TelegramWorld,
) -> None:
    service = await start_with_telegram(start_service, sandbox, portal)
    await link_telegram(service, telegram_world)
    telegram_world.type(SVETLANA, SUPERVISORS_GROUP, "/rate 494 5 Из группы")
    await eventually(lambda: telegram_links(telegram_world, SVETLANA), within=10)
    assert telegram_links(telegram_world, SUPERVISORS_GROUP) == []
    [told] = telegram_world.messages_from_bot(SUPERVISORS_GROUP)
    assert "личный чат" in told


@pytest.mark.parametrize("side", ["telegram", "bitrix24"])
async def test_a_telegram_link_undone_before_the_callback_casts_nothing(
    http: aiohttp.ClientSession,
    start_service: ServiceFactory,
    sandbox: TestServer,
    portal: Portal,
    telegram_world: TelegramWorld,
    side: str,
) -> None:
    """The Telegram account asked while linked to 27; the link is undone; 27 then allows the
    application: 27's token is stored, but the vote the unlinked account asked for is not
    cast in 27's name, nor is its outcome told to that account."""
    service = await start_with_telegram(start_service, sandbox, portal)
    await link_telegram(service, telegram_world)
    telegram_world.type(SVETLANA, SUPERVISORS_GROUP, "/rate 494 1 Чужими руками")
    [link] = await eventually(
        lambda: (
            telegram_links(telegram_world, SVETLANA)
            or telegram_links(telegram_world, SUPERVISORS_GROUP)
        ),
        within=10,
    )
    if side == "telegram":
        before = len(telegram_world.messages_from_bot(SVETLANA))
        telegram_world.type(SVETLANA, SVETLANA, "/unlink")
        await eventually(
            lambda: len(telegram_world.messages_from_bot(SVETLANA)) > before, within=10
        )
    else:
        await service.reply_to(27, service.bot_id, "/unlink")
    assert (await allow(http, link, 27))[0] == 200
    await drained(service)
    assert votes_by(portal) == []
    assert portal.sessions[494].vote_head == 0
