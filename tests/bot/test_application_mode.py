"""Application mode (issue 12), end to end over HTTP: a supervisor authorises the service once
through the sandbox's local application, and their votes are cast with their own token, so
Bitrix24 checks their right to rate; forged and replayed callbacks change nothing."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from bot.config import OAUTH_CALLBACK_PATH
from bot.sandbox.keyboard import buttons_of
from bot.sandbox.oauth import LocalApp, create_app, expire_access_tokens
from bot.sandbox.oauth_http import TOKEN_FAULT
from bot.sandbox.portal import Fault, Message, Portal
from bot.sandbox.telegram.seed import SUPERVISORS_GROUP, TOKEN
from bot.sandbox.telegram.world import TelegramWorld
from bot.state import CORE
from tests.harness import Service, ServiceFactory, drained, eventually, telegram_api_url
from tests.oauthed import Scripted, base_url, scripted_server

VOTE = "imopenlines.session.head.vote"
KEY = "a-key-for-the-tokens-of-these-tests-0123456789"
SVETLANA = 5001  # Telegram; the portal's supervisor 27


async def start_app_mode(
    start_service: ServiceFactory, sandbox: TestServer, portal: Portal, **env: str
) -> tuple[Service, LocalApp]:
    """The service in application mode against the sandbox's local application, whose
    handler path is the service's callback (as the administrator sets it up)."""
    app = create_app(portal, "http://127.0.0.1:1" + OAUTH_CALLBACK_PATH)
    values = {
        "B24_SUPERVISOR_IDS": "",
        "B24_APP_CLIENT_ID": app.client_id,
        "B24_APP_CLIENT_SECRET": app.client_secret,
        "B24_OAUTH_SERVER": base_url(sandbox),
        "BOT_SECRET_KEY": KEY,
    }
    service = await start_service(**(values | env))
    app.handler_url = service.settings.public_url + OAUTH_CALLBACK_PATH
    return service, app


@pytest.fixture
async def app_mode(
    start_service: ServiceFactory, sandbox: TestServer, portal: Portal
) -> tuple[Service, LocalApp]:
    return await start_app_mode(start_service, sandbox, portal)


def link_of(message: Message) -> str:
    [link] = [b["LINK"] for b in buttons_of(message.keyboard) if b.get("LINK")]
    return str(link)


async def allow(http: aiohttp.ClientSession, link: str, user_id: int) -> tuple[int, str]:
    """The logged-in `user_id` opens the button's address and allows the application; the
    browser follows the portal's redirect to the service's callback: that page."""
    return await open_page(http, await consented(http, link, user_id))


async def consented(http: aiohttp.ClientSession, link: str, user_id: int) -> str:
    """The callback address the portal sends `user_id`'s browser to (not opened yet)."""
    async with http.get(f"{link}&sandbox_user={user_id}", allow_redirects=False) as consent:
        assert consent.status == 302, await consent.text()
        return consent.headers["Location"]


def tampered(callback: str, **changes: str) -> str:
    """A callback address with some of its query changed."""
    parts = urlsplit(callback)
    query = dict(parse_qsl(parts.query)) | changes
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}"


async def open_page(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as page:
        assert "no-referrer" in page.headers["Referrer-Policy"]
        return page.status, await page.text()


def token_requests(portal: Portal, grant: str | None = None) -> list[dict[str, str]]:
    return [
        r.params
        for r in portal.oauth.requests
        if grant is None or r.params.get("grant_type") == grant
    ]


def votes_by(portal: Portal) -> list[tuple[int | None, str]]:
    """Who cast each head vote, and with what: a supervisor's own token or the webhook."""
    return [(c.user_id, c.auth) for c in portal.calls if c.method == VOTE and c.status == 200]


async def ask(service: Service, user_id: int, text: str) -> Message:
    return await service.reply_to(user_id, service.bot_id, text)


async def linked(
    http: aiohttp.ClientSession, service: Service, user_id: int, session: int = 494
) -> None:
    """`user_id` links once (their first command waits for it and is answered)."""
    before = len(service.bot_messages())
    prompt = await ask(service, user_id, f"/rate {session} 4")
    assert (await allow(http, link_of(prompt), user_id))[0] == 200
    await eventually(lambda: len(service.bot_messages()) >= before + 2)


async def test_a_head_links_once_and_the_waiting_vote_is_saved_as_theirs(
    http: aiohttp.ClientSession, app_mode: tuple[Service, LocalApp], portal: Portal
) -> None:
    service, app = app_mode
    prompt = await ask(service, 27, "/rate 494 5 Молодец")
    assert "один раз разрешите" in prompt.text
    link = link_of(prompt)
    assert link.startswith(f"{base_url_of(service)}/oauth/authorize/?client_id={app.client_id}")
    assert service.votes() == 0  # nothing is voted in the webhook owner's name meanwhile
    status, page = await allow(http, link, 27)
    assert status == 200
    assert "Готово" in page
    answer = await eventually(lambda: _saved(service))
    assert "Сессия 494: ★★★★★ 5/5" in answer.text
    assert (portal.sessions[494].vote_head, portal.sessions[494].comment_head) == (5, "Молодец")
    assert votes_by(portal) == [(27, "token")]
    assert [n["from_user_id"] for n in portal.notifications] == [27]  # the operator sees 27
    # The next command goes straight through, as 27.
    again = await ask(service, 27, "/rate 495 3")
    assert "Сессия 495: ★★★☆☆ 3/5" in again.text
    assert votes_by(portal) == [(27, "token"), (27, "token")]
    assert len(token_requests(portal, "authorization_code")) == 1


def base_url_of(service: Service) -> str:
    url = urlsplit(service.settings.b24_webhook_url.get_secret_value())  # type: ignore[union-attr]
    return f"{url.scheme}://{url.netloc}"


def _saved(service: Service) -> Message | None:
    found = [m for m in service.bot_messages() if "Сохранено" in m.text]
    return found[-1] if found else None


async def test_a_supervisor_without_the_right_is_refused_by_the_portal_and_told_so(
    http: aiohttp.ClientSession, app_mode: tuple[Service, LocalApp], portal: Portal
) -> None:
    """Pyotr (28) sees line 1 but may not rate on it: Bitrix24 refuses him, not our list."""
    service, _ = app_mode
    before = len(service.bot_messages())
    prompt = await ask(service, 28, "/rate 494 5 Молодец")
    assert (await allow(http, link_of(prompt), 28))[0] == 200
    await eventually(lambda: len(service.bot_messages()) >= before + 2)
    answer = service.bot_messages()[-1]
    assert "У вас нет права оценивать диалоги этой линии" in answer.text
    assert portal.sessions[494].vote_head == 0
    assert votes_by(portal) == []


async def test_a_replayed_callback_changes_nothing_and_sends_nothing(
    http: aiohttp.ClientSession, app_mode: tuple[Service, LocalApp], portal: Portal
) -> None:
    service, _ = app_mode
    prompt = await ask(service, 27, "/rate 494 5")
    callback = await consented(http, link_of(prompt), 27)
    assert (await open_page(http, callback))[0] == 200
    await eventually(lambda: _saved(service))
    exchanges = len(token_requests(portal))
    status, page = await open_page(http, callback)
    assert status == 400
    assert "устарела или уже использована" in page
    assert len(token_requests(portal)) == exchanges
    await drained(service)
    assert votes_by(portal) == [(27, "token")]


@pytest.mark.parametrize(
    "query",
    [
        {"state": "forged-state", "code": "c0de"},
        {"state": "", "code": "c0de"},
        {"code": "c0de"},
        {"state": "x" * 3000, "code": "c" * 3000},
    ],
    ids=["forged", "empty", "missing", "huge"],
)
async def test_a_forged_callback_is_refused_and_nothing_is_sent(
    http: aiohttp.ClientSession,
    app_mode: tuple[Service, LocalApp],
    portal: Portal,
    sandbox: TestServer,
    query: dict[str, str],
) -> None:
    service, _ = app_mode
    host = f"{sandbox.host}:{sandbox.port}"
    full = {"domain": host, "member_id": portal.member_id, "server_domain": host} | query
    url = f"{service.settings.public_url}{OAUTH_CALLBACK_PATH}?{urlencode(full)}"
    status, page = await open_page(http, url)
    assert status == 400
    assert "Traceback" not in page
    assert token_requests(portal) == []
    assert await service.server.app[CORE].storage.unfinished() == 0


async def test_a_code_for_another_user_is_refused_and_stores_nothing(
    http: aiohttp.ClientSession, app_mode: tuple[Service, LocalApp], portal: Portal
) -> None:
    """Svetlana's link opened by Pyotr, logged in as himself: his pair is not hers."""
    service, _ = app_mode
    prompt = await ask(service, 27, "/rate 494 5")
    status, page = await allow(http, link_of(prompt), 28)
    assert status == 400
    assert "Не получилось" in page
    await drained(service)
    assert votes_by(portal) == []
    # Neither of them has a token: Svetlana's next command asks again.
    again = await ask(service, 27, "/rate 494 5")
    assert "один раз разрешите" in again.text


async def test_a_callback_naming_a_foreign_oauth_server_sends_the_code_nowhere(
    http: aiohttp.ClientSession,
    app_mode: tuple[Service, LocalApp],
    portal: Portal,
    aiohttp_server: AiohttpServer,
) -> None:
    service, _ = app_mode
    foreign = Scripted(body='{"access_token": "x"}')
    elsewhere = await scripted_server(aiohttp_server, foreign)
    prompt = await ask(service, 27, "/rate 494 5")
    callback = await consented(http, link_of(prompt), 27)
    foreign_host = f"127.0.0.1:{elsewhere.port}"
    status, _ = await open_page(http, tampered(callback, server_domain=foreign_host))
    assert status == 400
    assert foreign.seen == []
    assert token_requests(portal) == []
    assert votes_by(portal) == []


async def test_an_access_token_expiring_mid_way_is_refreshed_once_and_the_vote_cast_once(
    http: aiohttp.ClientSession, app_mode: tuple[Service, LocalApp], portal: Portal
) -> None:
    service, _ = app_mode
    await linked(http, service, 27)
    expire_access_tokens(portal, 27)
    answer = await ask(service, 27, "/rate 495 2 Коротко")
    assert "Сессия 495: ★★☆☆☆ 2/5" in answer.text
    assert len(token_requests(portal, "refresh_token")) == 1
    assert votes_by(portal) == [(27, "token"), (27, "token")]


async def test_two_commands_meeting_an_expired_token_refresh_it_once(
    http: aiohttp.ClientSession, app_mode: tuple[Service, LocalApp], portal: Portal
) -> None:
    service, _ = app_mode
    await linked(http, service, 27)
    expire_access_tokens(portal, 27)
    before = len(service.bot_messages())
    await asyncio.gather(
        service.say(27, service.bot_id, "/rate 495 2"),
        service.say(27, service.bot_id, "/rate 494 3"),
    )
    await eventually(lambda: len(service.bot_messages()) >= before + 2)
    assert len(token_requests(portal, "refresh_token")) == 1
    assert (portal.sessions[495].vote_head, portal.sessions[494].vote_head) == (2, 3)


async def test_a_deactivated_user_s_token_is_dropped_and_the_audit_says_why(
    http: aiohttp.ClientSession, app_mode: tuple[Service, LocalApp], portal: Portal
) -> None:
    service, _ = app_mode
    await linked(http, service, 27)
    portal.users[27].active = False
    answer = await ask(service, 27, "/rate 495 2")
    assert "больше не принимает разрешение" in answer.text
    await drained(service)
    audit = await service.server.app[CORE].storage.audit()
    assert audit[-1].outcome == "relink_needed:authorization_error"
    assert audit[-1].acted_as is None
    assert votes_by(portal) == [(27, "token")]  # only the first vote, before


async def test_a_re_created_application_asks_every_supervisor_to_link_again(
    http: aiohttp.ClientSession, app_mode: tuple[Service, LocalApp], portal: Portal
) -> None:
    service, app = app_mode
    await linked(http, service, 27)
    create_app(portal, app.handler_url)  # new id and secret; the service still has the old
    answer = await ask(service, 27, "/rate 495 2")
    assert "больше не принимает разрешение" in answer.text
    assert link_of(answer)


async def test_logout_forgets_the_token_and_the_next_vote_asks_again(
    http: aiohttp.ClientSession, app_mode: tuple[Service, LocalApp], portal: Portal
) -> None:
    service, _ = app_mode
    await linked(http, service, 27)
    assert "забыл ваше разрешение" in (await ask(service, 27, "/logout")).text
    assert "забывать нечего" in (await ask(service, 27, "/выйти")).text
    assert "один раз разрешите" in (await ask(service, 27, "/rate 495 2")).text


async def test_the_service_restarted_between_the_link_and_the_callback_completes_the_vote(
    http: aiohttp.ClientSession,
    start_service: ServiceFactory,
    sandbox: TestServer,
    portal: Portal,
) -> None:
    first, app = await start_app_mode(start_service, sandbox, portal)
    prompt = await ask(first, 27, "/rate 494 5 После перезапуска")
    callback = urlsplit(await consented(http, link_of(prompt), 27))
    await first.server.close()
    second = await start_service(
        B24_SUPERVISOR_IDS="",
        B24_APP_CLIENT_ID=app.client_id,
        B24_APP_CLIENT_SECRET=app.client_secret,
        B24_OAUTH_SERVER=base_url(sandbox),
        BOT_SECRET_KEY=KEY,
    )
    url = f"{second.settings.public_url}{callback.path}?{callback.query}"
    assert (await open_page(http, url))[0] == 200
    await eventually(lambda: portal.sessions[494].comment_head == "После перезапуска")
    assert votes_by(portal) == [(27, "token")]


async def test_the_link_request_in_an_open_line_never_reaches_the_customer(
    app_mode: tuple[Service, LocalApp], portal: Portal
) -> None:
    service, _ = app_mode
    await service.say(27, "chat1157", "/rate 5 Молодец")
    await eventually(lambda: any(link_of_or_none(m) for m in service.bot_messages()))
    assert not any(m.to_customer for m in portal.messages.values())
    [asked] = [m for m in service.bot_messages() if link_of_or_none(m)]
    assert asked.chat_id == portal.private_chat(27, service.bot_id).id


def link_of_or_none(message: Message) -> Any:
    return next((b.get("LINK") for b in buttons_of(message.keyboard) if b.get("LINK")), None)


async def test_a_linked_telegram_account_votes_with_its_bitrix24_user_s_own_token(
    http: aiohttp.ClientSession,
    start_service: ServiceFactory,
    sandbox: TestServer,
    portal: Portal,
    telegram_world: TelegramWorld,
) -> None:
    """Svetlana in the Telegram group (linked to 27): the same button, and once she allowed in
    Bitrix24, the waiting vote is hers, answered in the group."""
    await start_app_mode(
        start_service,
        sandbox,
        portal,
        B24_EVENT_MODE="fetch",
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=telegram_api_url(sandbox),
        TELEGRAM_ALLOWED_CHAT_IDS=str(SUPERVISORS_GROUP),
        TELEGRAM_USER_MAP=f"{SVETLANA}:27",
    )
    telegram_world.type(SVETLANA, SUPERVISORS_GROUP, "/rate 494 5 Из Telegram")

    def link_in_group() -> str | None:
        bot = telegram_world.bot.id
        found = [
            b["url"]
            for m in telegram_world.messages.values()
            if m.sender_id == bot and m.chat_id == SUPERVISORS_GROUP
            for b in m.buttons()
            if "url" in b
        ]
        return found[-1] if found else None

    link = await eventually(link_in_group, within=10)
    assert (await allow(http, link, 27))[0] == 200
    await eventually(
        lambda: any("Сохранено" in t for t in telegram_world.messages_from_bot(SUPERVISORS_GROUP)),
        within=10,
    )
    assert portal.sessions[494].comment_head == "Из Telegram"
    assert votes_by(portal) == [(27, "token")]


async def test_an_oauth_server_that_cannot_be_reached_keeps_the_pair_and_the_vote_is_saved_later(
    http: aiohttp.ClientSession, app_mode: tuple[Service, LocalApp], portal: Portal
) -> None:
    service, _ = app_mode
    await linked(http, service, 27)
    expire_access_tokens(portal, 27)
    portal.faults.append(Fault(method=TOKEN_FAULT, status=503, times=1))
    await service.say(27, service.bot_id, "/rate 495 2 Позже")
    await eventually(lambda: portal.sessions[495].comment_head == "Позже", within=15)
    assert [r["grant_type"] for r in token_requests(portal)] == [
        "authorization_code",
        "refresh_token",
        "refresh_token",
    ]
    assert votes_by(portal) == [(27, "token"), (27, "token")]


async def test_a_refresh_whose_answer_was_lost_asks_the_supervisor_again_rather_than_guess(
    http: aiohttp.ClientSession, app_mode: tuple[Service, LocalApp], portal: Portal
) -> None:
    """The server issued a pair but its answer never came: the old refresh token is spent
    (single use), so the next try meets invalid_grant and the supervisor allows again; no
    vote is cast on a guess."""
    service, _ = app_mode
    await linked(http, service, 27)
    expire_access_tokens(portal, 27)
    portal.faults.append(Fault(method=TOKEN_FAULT, status=504, after=True, times=1))
    before = len(service.bot_messages())
    await service.say(27, service.bot_id, "/rate 495 2 Позже")
    asked = await eventually(
        lambda: next((m for m in service.bot_messages()[before:] if link_of_or_none(m)), None),
        within=15,
    )
    assert "больше не принимает разрешение" in asked.text
    assert votes_by(portal) == [(27, "token")]


@pytest.mark.parametrize("mode", ["webhook", "fetch"])
async def test_with_no_list_every_command_of_a_message_runs_for_a_linked_supervisor(
    http: aiohttp.ClientSession,
    start_service: ServiceFactory,
    sandbox: TestServer,
    portal: Portal,
    mode: str,
) -> None:
    """B24_SUPERVISOR_IDS unset: the intake lets every staff member's commands through (not
    one reply, as for someone off a list), and Bitrix24 decides."""
    service, _ = await start_app_mode(start_service, sandbox, portal, B24_EVENT_MODE=mode)
    await linked(http, service, 27)
    await service.say(27, "chat2001", "/rate 494 2 Первая\n/rate 495 3 Вторая")
    await eventually(
        lambda: (
            (portal.sessions[494].comment_head, portal.sessions[495].comment_head)
            == ("Первая", "Вторая")
        ),
        within=10,
    )


async def test_without_the_application_logout_is_an_unknown_command(service: Service) -> None:
    answer = await ask(service, 27, "/logout")
    assert "Не знаю команду /logout" in answer.text
