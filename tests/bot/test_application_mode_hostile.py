"""Application mode (issue 12) attacked as a hostile portal user would: each finding is written
down here as the attack it was, over HTTP against the sandbox (the service's own tests of the
flow are in test_application_mode.py)."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from bot.config import OAUTH_CALLBACK_PATH
from bot.sandbox.oauth import expire_access_tokens
from bot.sandbox.portal import Message, Portal
from bot.sandbox.telegram.seed import SUPERVISORS_GROUP, TOKEN
from bot.sandbox.telegram.world import TelegramWorld
from bot.state import CORE
from bot.storage.sqlite_tokens import STATES_KEPT
from tests.bot.telegram.test_end_to_end import eventually_ready
from tests.bot.test_application_mode import (
    allow,
    ask,
    consented,
    link_of,
    link_of_or_none,
    open_page,
    start_app_mode,
    tampered,
    votes_by,
)
from tests.harness import (
    Service,
    ServiceFactory,
    drained,
    eventually,
    telegram_api_url,
    write_locked,
)
from tests.oauthed import Scripted, scripted_server

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
    assert sorted(e.outcome for e in audit) == ["link_needed", "link_sent", "saved"]


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


async def test_a_telegram_group_member_clicking_another_s_link_links_nobody(
    http: aiohttp.ClientSession,
    start_service: ServiceFactory,
    sandbox: TestServer,
    portal: Portal,
    telegram_world: TelegramWorld,
) -> None:
    """In Telegram the link stays in the group (the bot may not write first to a mapped user
    who never opened a private chat): Пётр (28) clicks Светлана's link as himself and is
    refused; nothing is stored or cast, and her next command asks again."""
    service = await start_with_telegram(start_service, sandbox, portal)
    await link_telegram(service, telegram_world)
    telegram_world.type(SVETLANA, SUPERVISORS_GROUP, "/rate 494 5 Из группы")
    [link] = await eventually(lambda: telegram_links(telegram_world, SUPERVISORS_GROUP), within=10)
    assert (await allow(http, link, 28))[0] == 400
    await drained(service)
    assert votes_by(portal) == []
    assert "один раз разрешите" in (await ask(service, 27, "/rate 494 5")).text


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


@pytest.mark.parametrize(
    ("author", "chat", "why"),
    [
        (301, "bot", "an extranet guest"),
        (1211, "chat1157", "the open line's customer"),
        (101, "chat1157", "an operator without the right, in the line"),
    ],
    ids=["extranet", "customer", "operator_in_line"],
)
async def test_no_link_reaches_a_guest_or_a_customer(
    start_service: ServiceFactory,
    sandbox: TestServer,
    portal: Portal,
    author: int,
    chat: str,
    why: str,
) -> None:
    service, _ = await start_app_mode(start_service, sandbox, portal)
    to: int | str = service.bot_id if chat == "bot" else chat
    await service.say(author, to, "/rate 494 5")
    await drained(service)
    assert not any(m.to_customer for m in portal.messages.values()), why
    for message in portal.messages.values():
        if link_of_or_none(message):  # only ever in the author's own private chat, never a guest's
            assert author == 101
            assert message.chat_id == portal.private_chat(101, service.bot_id).id
    assert votes_by(portal) == []


async def test_two_callbacks_racing_for_one_state_complete_the_vote_once(
    http: aiohttp.ClientSession,
    start_service: ServiceFactory,
    sandbox: TestServer,
    portal: Portal,
) -> None:
    service, _ = await start_app_mode(start_service, sandbox, portal)
    prompt = await ask(service, 27, "/rate 494 5 Дважды")
    callback = await consented(http, link_of(prompt), 27)
    pages = await asyncio.gather(*(open_page(http, callback) for _ in range(4)))
    assert sorted(status for status, _ in pages) == [200, 400, 400, 400]
    await drained(service)
    assert votes_by(portal) == [(27, "token")]
    assert len([r for r in portal.oauth.requests if r.params.get("code")]) == 1


@pytest.mark.parametrize(
    "spelling",
    [
        "{foreign}",
        "{foreign}.",
        "user@{foreign}",
        "{pinned}@{foreign}",
        "{foreign}#{pinned}",
        "{foreign}/{pinned}",
        "{pinned}.{foreign}",
        "LOCALHOST:{port}",
        "127%2e0%2e0%2e1:{port}",
        "{pinned}:{port}",
        "",
    ],
)
async def test_no_spelling_of_server_domain_sends_the_code_or_secret_elsewhere(
    http: aiohttp.ClientSession,
    start_service: ServiceFactory,
    sandbox: TestServer,
    portal: Portal,
    aiohttp_server: AiohttpServer,
    spelling: str,
) -> None:
    service, app = await start_app_mode(start_service, sandbox, portal)
    foreign = Scripted(body='{"access_token": "x"}')
    elsewhere = await scripted_server(aiohttp_server, foreign)
    server_domain = spelling.format(
        foreign=f"127.0.0.1:{elsewhere.port}",
        pinned=f"{sandbox.host}:{sandbox.port}",
        port=elsewhere.port,
    )
    prompt = await ask(service, 27, "/rate 494 5")
    callback = await consented(http, link_of(prompt), 27)
    status, page = await open_page(http, tampered(callback, server_domain=server_domain))
    assert status == 400
    assert foreign.seen == []
    assert [r for r in portal.oauth.requests if r.params.get("client_secret")] == []
    assert app.client_secret not in page
    await drained(service)
    assert votes_by(portal) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"domain": "evil.example"},
        {"domain": ""},
        {"member_id": "another-portal"},
        {"error": "access_denied", "error_description": "<script>alert(1)</script>[b]x[/b]"},
    ],
    ids=["domain", "no_domain", "member_id", "declined_with_markup"],
)
async def test_a_tampered_callback_links_nobody_and_echoes_nothing(
    http: aiohttp.ClientSession,
    start_service: ServiceFactory,
    sandbox: TestServer,
    portal: Portal,
    changes: dict[str, str],
) -> None:
    service, _ = await start_app_mode(start_service, sandbox, portal)
    prompt = await ask(service, 27, "/rate 494 5")
    callback = await consented(http, link_of(prompt), 27)
    status, page = await open_page(http, tampered(callback, **changes))
    assert status == 400
    for value in filter(None, changes.values()):
        assert value not in page
    await drained(service)
    assert votes_by(portal) == []
    assert "один раз разрешите" in (await ask(service, 27, "/rate 494 5")).text  # nothing stored


@pytest.mark.parametrize(
    "query",
    [
        "state=%ff%fe%00&code=%ED%A0%80",
        "state=a&state=b&code=c&code=d",
        "state[]=a&code[]=b",
        "state=" + "%41" * 5000,
        "%00=%00",
    ],
    ids=["bad_utf8", "repeated", "array", "long", "nul"],
)
async def test_a_junk_callback_gets_a_plain_page_never_a_500(
    http: aiohttp.ClientSession,
    start_service: ServiceFactory,
    sandbox: TestServer,
    portal: Portal,
    query: str,
) -> None:
    service, _ = await start_app_mode(start_service, sandbox, portal)
    status, page = await open_page(
        http, f"{service.settings.public_url}{OAUTH_CALLBACK_PATH}?{query}"
    )
    assert status == 400
    assert "Traceback" not in page
    assert portal.oauth.requests == []


async def test_no_code_state_token_or_secret_reaches_a_log_line(
    http: aiohttp.ClientSession,
    start_service: ServiceFactory,
    sandbox: TestServer,
    portal: Portal,
    capsys: pytest.CaptureFixture[str],
) -> None:
    service, app = await start_app_mode(start_service, sandbox, portal)
    prompt = await ask(service, 27, "/rate 494 5 Секреты")
    link = link_of(prompt)
    callback = await consented(http, link, 27)
    assert (await open_page(http, callback))[0] == 200
    await eventually(lambda: portal.sessions[494].vote_head == 5)
    expire_access_tokens(portal, 27)
    await ask(service, 27, "/rate 495 4")
    await drained(service)
    query = dict(parse_qsl(urlsplit(callback).query))
    secrets = [query["code"], query["state"], app.client_secret]
    secrets += [g.access_token for g in portal.oauth.by_access.values()]
    secrets += [g.refresh_token for g in portal.oauth.by_refresh.values()]
    logged = capsys.readouterr()
    assert "oauth.linked" in logged.out  # the lines are there to look into
    assert "oauth.refreshed" in logged.out
    for secret in secrets:
        assert secret not in logged.out + logged.err
    audit = await service.server.app[CORE].storage.audit()
    assert not any(query["state"] in entry.reply for entry in audit)


async def test_a_callback_while_the_database_is_locked_gets_a_plain_page_and_can_be_retried(
    http: aiohttp.ClientSession,
    start_service: ServiceFactory,
    sandbox: TestServer,
    portal: Portal,
) -> None:
    """A backup holds the write lock when the supervisor's browser comes back: they are told
    to try again, never shown a 500, and the link still works afterwards."""
    service, _ = await start_app_mode(start_service, sandbox, portal)
    prompt = await ask(service, 27, "/rate 494 5 После блокировки")
    callback = await consented(http, link_of(prompt), 27)
    await drained(service)
    with write_locked(service.settings.bot_database_url):
        status, page = await open_page(http, callback)
    assert status == 503
    assert "Traceback" not in page
    assert (await allow(http, link_of(prompt), 27))[0] == 200
    await eventually(lambda: portal.sessions[494].comment_head == "После блокировки")


async def test_many_asks_of_an_unlinked_user_keep_only_a_few_links_alive(
    http: aiohttp.ClientSession,
    start_service: ServiceFactory,
    sandbox: TestServer,
    portal: Portal,
) -> None:
    """Each `/rate` of an unlinked user makes a state (and keeps a waiting command): a user
    sending many keeps only the newest few; the oldest links are dead."""
    service, _ = await start_app_mode(start_service, sandbox, portal)
    prompts = [await ask(service, 27, f"/rate 494 {1 + n % 5}") for n in range(STATES_KEPT + 2)]
    oldest, newest = prompts[0], prompts[-1]
    assert (await allow(http, link_of(oldest), 27))[0] == 400
    assert (await allow(http, link_of(newest), 27))[0] == 200
    await drained(service)
    assert votes_by(portal) == [(27, "token")]


async def test_a_vote_completed_for_an_open_line_reaches_only_the_supervisor(
    http: aiohttp.ClientSession,
    start_service: ServiceFactory,
    sandbox: TestServer,
    portal: Portal,
) -> None:
    """The supervisor types in the line's chat; the link, and after the click the saved vote
    with its comment, reach their private chat alone, never the customer."""
    service, _ = await start_app_mode(start_service, sandbox, portal)
    await service.say(27, "chat1157", "/rate 5 Клиенту не показывать")
    link = await eventually(lambda: next(iter(links_in(service.bot_messages())), None))
    assert (await allow(http, link, 27))[0] == 200
    await eventually(lambda: any("Сохранено" in m.text for m in service.bot_messages()))
    await drained(service)
    assert not any(m.to_customer for m in portal.messages.values())
    private = portal.private_chat(27, service.bot_id).id
    assert all(m.chat_id == private for m in service.bot_messages())
