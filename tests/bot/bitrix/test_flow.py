"""`/rate` from a Bitrix24 chat, end to end: the service and the sandbox portal over HTTP."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from typing import Any, Literal

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from bot.bitrix.registration import handler_url
from bot.bitrix.webhook import INTAKE
from bot.logs import configure_logging
from bot.sandbox import operating
from bot.sandbox.portal import Bot, Fault, Portal
from tests.harness import FAST, Service, ServiceFactory, drained, eventually

VOTE = "imopenlines.session.head.vote"


def stored(service: Service, session_id: int) -> tuple[int, str]:
    session = service.portal.sessions[session_id]
    return session.vote_head, session.comment_head


async def test_a_supervisor_rates_in_the_private_chat_with_the_bot(service: Service) -> None:
    reply = await service.reply_to(27, service.bot_id, "/rate 494 5 Молодец")
    assert stored(service, 494) == (5, "Молодец")
    assert reply.text == "✅ Сохранено. Сессия 494: ★★★★★ 5/5, комментарий «Молодец»."
    assert reply.via == "imbot.command.answer"
    assert reply.chat_id == service.portal.private_chat(27, service.bot_id).id


@pytest.mark.parametrize(
    ("text", "expected", "reply"),
    [
        ("/rate 495 2", (2, "Вежливо"), "Сессия 495: ★★☆☆☆ 2/5, комментарий «Вежливо»."),
        (
            "/rate 495 Долго отвечал",
            (4, "Долго отвечал"),
            "Сессия 495: ★★★★☆ 4/5, комментарий «Долго отвечал».",
        ),
        ("/rate #495 ★★★ Средне\nвторая строка", (3, "Средне\nвторая строка"), "★★★☆☆ 3/5"),
        ("/оценка 495 5/5", (5, "Вежливо"), "★★★★★ 5/5"),
    ],
)
async def test_what_is_not_given_keeps_its_stored_value(
    service: Service, text: str, expected: tuple[int, str], reply: str
) -> None:
    """Session 495 starts at 4, "Вежливо": a rating alone keeps the comment, and vice versa."""
    answer = await service.reply_to(27, service.bot_id, text)
    assert stored(service, 495) == expected
    assert reply in answer.text


async def test_a_vote_is_one_rest_request_and_the_reply_another(service: Service) -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    await service.reply_to(27, service.bot_id, "/rate 495 4")
    await service.reply_to(27, service.bot_id, "/rate 495 5")
    await eventually(lambda: stream.getvalue().count("command.handled") == 2)
    first, line = [json.loads(x) for x in stream.getvalue().splitlines() if "command.handled" in x]
    # A command event does not say whether its author is staff: the first vote looks them up
    # (im.user.get), and the answer is remembered for ten minutes.
    assert first["rest_requests"] == 3
    assert {
        k: line[k] for k in ("command", "outcome", "session_id", "rating", "user_id", "source")
    } == {
        "command": "rate",
        "outcome": "saved",
        "session_id": 495,
        "rating": 5,
        "user_id": 27,
        "source": "bitrix",
    }
    assert line["rest_requests"] == 2  # one batch (read, vote, read back) and the answer
    assert line["duration_ms"] >= 0
    assert line["delivered"] is True


async def test_every_rate_line_of_a_message_is_rated(service: Service) -> None:
    await service.say(
        27, service.bot_id, "/rate 494 5 Молодец\n/rate 495 3\nи комментарий\n/rate 496 1"
    )
    await eventually(lambda: len(service.bot_messages()) == 3)
    assert stored(service, 494) == (5, "Молодец")
    assert stored(service, 495) == (3, "и комментарий")
    assert stored(service, 496) == (1, "")
    texts = sorted(m.text for m in service.bot_messages())
    assert [t.split(":")[0] for t in texts] == [
        "✅ Сохранено. Сессия 494",
        "✅ Сохранено. Сессия 495",
        "✅ Сохранено. Сессия 496",
    ]


@pytest.mark.parametrize("text", ["/rate 494 5 Молодец", "/rate 494 5 Итог:\n/путь не тот"])
@pytest.mark.parametrize("how", ["the same event twice", "as command and as message"])
async def test_a_command_delivered_twice_votes_once_and_answers_once(
    service: Service, http: aiohttp.ClientSession, how: str, text: str
) -> None:
    portal, events = service.portal, service.events
    chat = portal.private_chat(27, service.bot_id)
    message = portal.post(chat.id, 27, text, via="user")
    command = next(c for c in portal.commands.values() if c.command == "rate")
    first = events.command_form(
        message, portal.users[27], chat, [(command, text.partition("\n")[0][6:], "TEXTAREA")]
    )
    second = (
        first
        if how == "the same event twice"
        else events.message_form(
            portal.bots[service.bot_id], message, portal.users[27], chat, message.text
        )
    )
    assert (await events.post(command.handler, first)).status == 200
    assert (await events.post(command.handler, second)).status == 200
    await eventually(service.bot_messages)
    await eventually(lambda: service.votes() >= 1)
    assert service.votes() == 1
    assert len(service.bot_messages()) == 1
    assert stored(service, 494) == (5, text.removeprefix("/rate 494 5 "))


async def test_someone_not_on_the_list_is_refused_with_their_user_id(service: Service) -> None:
    reply = await service.reply_to(28, service.bot_id, "/rate 494 5")
    assert "Ваш id в Битрикс24: 28" in reply.text
    assert service.votes() == 0
    assert stored(service, 494) == (0, "")


async def test_help_is_for_everyone(service: Service) -> None:
    reply = await service.reply_to(28, service.bot_id, "/help")
    assert reply.text.startswith("[b]Оценка диалогов открытых линий[/b]")


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("/rate 494 7 Молодец", "Оценка «7» не подходит"),
        # A decimal too long for a float once crashed the corrected example ("Something
        # went wrong") instead of explaining the rating.
        ("/rate 494 " + "9" * 400 + ".5 Молодец", "Оценка «99999"),
        ("/rate 494 -" + "9" * 400 + ",5", "Оценка «-9999"),
        ("/rate Молодец", "Укажите номер сессии"),
        ("привет", "Я понимаю только команды"),
        ("/foo", "Не знаю команду /foo"),
    ],
)
async def test_a_wrong_command_is_explained_and_costs_no_vote(
    service: Service, text: str, answer: str
) -> None:
    reply = await service.reply_to(27, service.bot_id, text)
    assert reply.text.startswith(answer)
    assert service.votes() == 0


def mark_line(service: Service, chat_id: int, marks: str) -> None:
    """Leave only some of the marks of an open line (§1.7, §1.8): either alone suffices."""
    chat = service.portal.chats[chat_id]
    if "CHAT_TYPE" not in marks:
        chat.type = "C"
    if "ENTITY_TYPE" not in marks:
        chat.entity_type = ""


LINE_MARKS = ["CHAT_TYPE=L and CHAT_ENTITY_TYPE=LINES", "CHAT_TYPE=L", "CHAT_ENTITY_TYPE=LINES"]


@pytest.mark.parametrize("marks", LINE_MARKS)
async def test_inside_an_open_line_chat_the_session_is_the_chat_s_and_the_customer_sees_nothing(
    service: Service, marks: str
) -> None:
    """The answer goes to the supervisor's private chat with the bot: nothing into the line."""
    mark_line(service, 1157, marks)
    reply = await service.reply_to(27, "chat1157", "/rate 5 Молодец")
    assert stored(service, 494) == (5, "Молодец")
    assert reply.chat_id == service.portal.private_chat(27, service.bot_id).id
    assert reply.text.startswith("✅ Сохранено. Сессия 494")
    assert service.bot_messages(1157) == []
    assert not any(m.to_customer for m in service.portal.messages.values())


async def test_an_explicit_session_wins_inside_an_open_line_chat(service: Service) -> None:
    await service.reply_to(27, "chat1157", "/rate #495 1")
    assert stored(service, 495) == (1, "Вежливо")
    assert stored(service, 494) == (0, "")


async def test_a_group_chat_mention_works_too(service: Service) -> None:
    await service.events.join(service.bot_id, 1, 2001)
    await eventually(lambda: service.bot_messages(2001))  # the welcome
    reply = await service.reply_to(27, "chat2001", "/rate 494 4 Хорошо", mention=service.bot_id)
    assert stored(service, 494) == (4, "Хорошо")
    assert reply.chat_id == 2001


@pytest.mark.parametrize("marks", LINE_MARKS)
async def test_joining_an_open_line_posts_nothing_at_all(service: Service, marks: str) -> None:
    """The welcome would reach the customer through the connector (§00 item 7)."""
    mark_line(service, 1157, marks)
    assert (await service.events.join(service.bot_id, 27, 1157)).status == 200
    storage = service.server.app[INTAKE].storage
    assert (await storage.unfinished(), await storage.audit()) == (0, [])
    assert service.bot_messages() == []


@pytest.mark.parametrize("marks", LINE_MARKS)
async def test_in_an_open_line_the_dialog_s_own_messages_get_no_answer(
    service: Service, marks: str
) -> None:
    """The attack: a bot with open-line support that is a member of an open-line chat (its
    line's bot, or joined) sees every message of the dialog (§1.5); each operator's or
    supervisor's line to the customer was answered "I understand commands only", one
    message to the operator's private chat per message they wrote. Only commands are for
    the bot there."""
    mark_line(service, 1157, marks)
    assert (await service.events.join(service.bot_id, 101, 1157)).status == 200
    portal, events = service.portal, service.events
    line, bot = portal.chats[1157], portal.bots[service.bot_id]
    for author, text in [(101, "Здравствуйте! Чем могу помочь?"), (27, "Проверяю диалог"),
                         (28, "Передаю коллеге"), (27, "")]:  # fmt: skip
        message = portal.post(line.id, author, text, via="user")
        form = events.message_form(bot, message, portal.users[author], line, message.text)
        assert (await events.post(bot.handlers["EVENT_MESSAGE_ADD"], form)).status == 200
    reply = await service.reply_to(27, "chat1157", "/rate 5 Молодец")  # a command still runs
    assert reply.text.startswith("✅ Сохранено. Сессия 494")
    await drained(service)
    assert service.bot_messages() == [reply]


async def test_a_comment_line_that_starts_with_a_slash_stays_in_the_comment(
    service: Service,
) -> None:
    reply = await service.reply_to(27, service.bot_id, "/rate 494 5 Итог:\n/путь к файлу не тот")
    assert stored(service, 494) == (5, "Итог:\n/путь к файлу не тот")
    assert reply.text.startswith("✅ Сохранено. Сессия 494")
    assert len(service.bot_messages()) == 1


async def test_joining_a_chat_gets_a_short_welcome(service: Service) -> None:
    await service.events.join(service.bot_id, 27)
    welcome = await eventually(service.bot_messages)
    assert welcome[-1].text.startswith("Здравствуйте! Я сохраняю оценки диалогов")


def _no_right(portal: Portal) -> None:
    portal.lines[1].heads.discard(1)
    portal.lines[1].supervisors.add(1)


def _no_feature(portal: Portal) -> None:
    portal.can_use_vote_head = False


def _hidden_line(portal: Portal) -> None:
    portal.users[1].is_admin = False
    portal.lines[2].heads.discard(1)


REFUSED_RU = "❌ Не сохранено: Битрикс24 отказал в оценке сессии {}. Возможные причины: такой "
NOT_ALLOWED_RU = "❌ Не сохранено: в настройках линии сессии {} у учётной записи бота нет права"
UNREADABLE_RU = "Сессия {} не найдена или недоступна учётной записи бота"

# (case, how the portal is set up, the command, head.vote's build, the reply's start)
NOTHING_SAVED: list[tuple[str, Callable[[Portal], None], str, str, str]] = [
    ("no right to rate", _no_right, "/rate 494 5 Молодец", "current", REFUSED_RU),
    ("no right to rate", _no_right, "/rate 494 5 Молодец", "legacy", NOT_ALLOWED_RU),
    ("a plan without the feature", _no_feature, "/rate 494 5 Да", "current", REFUSED_RU),
    ("a plan without the feature", _no_feature, "/rate 494 5 Да", "legacy", NOT_ALLOWED_RU),
    ("no such session", lambda _: None, "/rate 999 5 Молодец", "current", REFUSED_RU),
    ("no such session", lambda _: None, "/rate 999 5 Молодец", "legacy", UNREADABLE_RU),
    ("a line the webhook cannot see", _hidden_line, "/rate 496 5 Да", "current", REFUSED_RU),
    ("a line the webhook cannot see", _hidden_line, "/rate 496 5 Да", "legacy", UNREADABLE_RU),
    # The first read fails before any vote: not found and hidden look the same (§00 item 2).
    ("no such session, rating alone", lambda _: None, "/rate 999 5", "current", UNREADABLE_RU),
    ("no such session, the prompt", lambda _: None, "/rate 999", "current", UNREADABLE_RU),
    ("a hidden line, the prompt", _hidden_line, "/rate 496", "current", UNREADABLE_RU),
]


@pytest.mark.parametrize(
    ("case", "arrange", "text", "build", "reply_start"),
    NOTHING_SAVED,
    ids=[f"{n[0]}-{n[3]}" for n in NOTHING_SAVED],
)
async def test_when_nothing_is_saved_the_reply_says_so_and_why(
    start_service: ServiceFactory,
    case: str,
    arrange: Callable[[Portal], None],
    text: str,
    build: Literal["current", "legacy"],
    reply_start: str,
) -> None:
    service = await start_service()
    portal = service.portal
    portal.head_vote = build
    arrange(portal)
    session = int(text.split()[1])
    reply = await service.reply_to(27, service.bot_id, text)
    assert reply.text.startswith(reply_start.format(session))
    assert "sufficient rights" not in reply.text  # never Bitrix24's own description
    if session in portal.sessions:
        assert stored(service, session)[0] == 0


REFUSALS = {
    "ru": "❌ Не сохранено: Битрикс24 отказал в оценке сессии 494. Возможные причины: такой "
    "сессии нет; у учётной записи бота нет права оценивать диалоги этой линии или смотреть их "
    "историю; тариф без оценки руководителем. Проверьте номер сессии или обратитесь к "
    "администратору.",
    "en": "❌ Not saved: Bitrix24 refused the vote on session 494. Possible causes: there is no "
    "such session; the bot's account has no right to rate this line's dialogs or to view their "
    "history; the plan does not include rating by a supervisor. Check the session number, or "
    "ask the administrator.",
}


@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "one batch with halt"])
async def test_a_refusal_names_every_cause_in_both_languages(
    start_service: ServiceFactory, coalesce: bool
) -> None:
    service = await start_service(tuning=dataclasses.replace(FAST, coalesce=coalesce))
    _no_right(service.portal)
    for language, text in REFUSALS.items():
        service.portal.language = language
        reply = await service.reply_to(27, service.bot_id, "/rate 494 5 Молодец")
        assert reply.text == text
    assert stored(service, 494) == (0, "")


async def test_true_without_saving_is_caught_by_the_read_back(service: Service) -> None:
    """A legacy head.vote answers true and the session keeps its vote: the reply says not
    saved."""
    service.portal.head_vote = "legacy"
    service.portal.votes_ignored = True
    reply = await service.reply_to(27, service.bot_id, "/rate 494 5")
    assert reply.text.startswith("❌ Не сохранено: Битрикс24 ответил «готово»")
    assert service.votes() == 1


async def test_a_vote_that_meets_the_operating_time_limit_is_saved_once_it_resets(
    service: Service,
) -> None:
    """Another caller has spent head.vote's budget (scaled: 0.5 s per 1 s): the vote's 429
    OPERATION_TIME_LIMIT is waited out until operating_reset_at, never shown (§00 item 10)."""
    portal = service.portal
    portal.operating_limit, portal.operating_window = 0.5, 1.0
    operating.charge(portal, VOTE, 0.6)
    reply = await service.reply_to(27, service.bot_id, "/rate 494 5 Молодец")
    assert reply.text.startswith("✅ Сохранено. Сессия 494")
    assert stored(service, 494) == (5, "Молодец")


async def test_a_rate_limited_portal_is_waited_out(service: Service) -> None:
    service.portal.faults.append(
        Fault(method="batch", status=503, error="QUERY_LIMIT_EXCEEDED", times=2)
    )
    reply = await service.reply_to(27, service.bot_id, "/rate 494 5")
    assert reply.text.startswith("✅")


@pytest.mark.parametrize(
    ("to", "member", "where"),
    [("bot", False, "private"), ("chat2001", False, "private"), ("chat2001", True, "group")],
)
async def test_a_late_reply_is_a_message_where_the_bot_may_post(
    start_service: ServiceFactory, to: str, member: bool, where: str
) -> None:
    """Past the answer window, a message: in the chat if the bot is in it, else privately."""
    service = await start_service(tuning=dataclasses.replace(FAST, answer_window=0))
    if member:
        service.portal.chats[2001].members.add(service.bot_id)
    target = service.bot_id if to == "bot" else to
    reply = await service.reply_to(
        27, target, "/rate 494 5", mention=service.bot_id if member else None
    )
    assert reply.via == "imbot.message.add"
    private = service.portal.private_chat(27, service.bot_id).id
    assert reply.chat_id == (2001 if where == "group" else private)
    # Outside the private chat, never through a connector (§00 item 7).
    [call] = [c for c in service.portal.calls if c.method == "imbot.message.add"]
    assert call.params.get("SKIP_CONNECTOR") == ("Y" if where == "group" else None)


async def test_a_late_reply_after_the_bot_left_the_chat_reaches_the_supervisor_privately(
    start_service: ServiceFactory,
) -> None:
    """The attack: the bot is removed from the group while the command waits (a slow or
    failing portal). Bitrix24 refuses a message into a chat the bot is not in (400
    WRONG_REQUEST, §00 item 6); the answer about a saved vote must not be lost with it."""
    service = await start_service(tuning=dataclasses.replace(FAST, answer_window=0))
    service.portal.chats[2001].members.add(service.bot_id)
    service.portal.faults.append(Fault(method="batch", delay=0.5))
    await service.say(27, "chat2001", "/rate 494 5", mention=service.bot_id)
    await eventually(lambda: not service.portal.faults)  # the vote is on its way
    service.portal.chats[2001].members.discard(service.bot_id)
    replies = await eventually(service.bot_messages)
    assert stored(service, 494)[0] == 5
    private = service.portal.private_chat(27, service.bot_id).id
    assert [(m.chat_id, m.text.split(":")[0]) for m in replies] == [
        (private, "✅ Сохранено. Сессия 494")
    ]


async def test_another_bot_in_a_group_does_not_make_ours_a_member(
    start_service: ServiceFactory,
) -> None:
    """The attack: a group chat holds another application's bot, not ours; a command there
    lists that bot in BOT_IN_CHAT. A late reply must go where ours may post (privately),
    not into the chat first to be refused with WRONG_REQUEST (§00 item 6)."""
    service = await start_service(tuning=dataclasses.replace(FAST, answer_window=0))
    other = Bot(id=service.portal.new_id(), code="crm_helper", app_id="other_app", name="CRM")
    service.portal.bots[other.id] = other
    service.portal.chats[2001].members.add(other.id)
    reply = await service.reply_to(27, "chat2001", "/rate 494 5")
    assert reply.chat_id == service.portal.private_chat(27, service.bot_id).id
    refused = [c for c in service.portal.calls if c.error == "WRONG_REQUEST"]
    assert refused == []


@pytest.mark.parametrize(
    "gateway",
    [
        Fault(method="batch", status=504, error="GATEWAY_TIMEOUT", after=True, times=-1),
        Fault(method="batch", status=502, body="<html>Bad Gateway</html>", after=True, times=-1),
    ],
)
async def test_a_vote_stored_behind_a_failing_gateway_is_reported_as_stored(
    start_service: ServiceFactory, gateway: Fault
) -> None:
    """The attack: a gateway in front of Bitrix24 answers 502/504 after the portal stored the
    vote, until the bot gives up. "Nothing was saved" would be false: what the portal holds is
    read (here past the failing batch) and told."""
    service = await start_service(tuning=dataclasses.replace(FAST, coalesce=False))
    service.portal.faults.append(gateway)
    reply = await service.reply_to(27, service.bot_id, "/rate 494 5 Молодец")
    assert stored(service, 494) == (5, "Молодец")
    assert reply.text.startswith("✅ Сохранено. Сессия 494")


async def test_a_command_answer_bitrix24_drops_as_too_late_is_sent_as_a_message(
    service: Service,
) -> None:
    """The attack: the reply leaves in time by our clock, but reaches Bitrix24 after its
    10 minutes (a reply held up in the portal's queues or by its operating-time limit, or
    clocks that disagree): imbot.command.answer then answers `true` and posts nothing
    (§0 item 13). The answer is not lost: it goes as a message."""
    service.portal.faults.append(Fault(method="batch", delay=0.5))
    await service.say(27, service.bot_id, "/rate 494 5")
    await eventually(lambda: not service.portal.faults)  # the vote is on its way
    service.portal.advance_clock(11 * 60)  # by the portal's clock, the command is 11 min old
    reply = await eventually(service.bot_messages)
    assert reply[0].text.startswith("✅ Сохранено. Сессия 494")
    assert reply[0].via == "imbot.message.add"


async def test_english_portals_get_english(service: Service) -> None:
    service.portal.language = "en"
    reply = await service.reply_to(27, service.bot_id, "/rate 494 5 Well done")
    assert reply.text == "✅ Saved. Session 494: ★★★★★ 5/5, comment “Well done”."


async def test_an_event_s_client_endpoint_is_never_called(
    service: Service, aiohttp_server: AiohttpServer, http: aiohttp.ClientSession
) -> None:
    hostile_calls: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hostile_calls.append(request.path)
        return web.json_response({"result": True})

    hostile_app = web.Application()
    hostile_app.router.add_route("*", "/{tail:.*}", record)
    hostile = await aiohttp_server(hostile_app)
    portal, events = service.portal, service.events
    chat = portal.private_chat(27, service.bot_id)
    message = portal.post(chat.id, 27, "/rate 494 5", via="user")
    command = next(c for c in portal.commands.values() if c.command == "rate")
    form: dict[str, Any] = events.command_form(
        message, portal.users[27], chat, [(command, "494 5", "TEXTAREA")]
    )
    endpoint = str(hostile.make_url("/rest/"))
    form["auth"] = form["auth"] | {
        "client_endpoint": endpoint,
        "domain": f"127.0.0.1:{hostile.port}",
        "access_token": "stolen?",
        "server_endpoint": endpoint,
    }
    assert (
        await events.post(
            handler_url(service.settings) + f"?CLIENT_ID={_client_id(service)}", form
        )
    ).status == 200
    await eventually(service.bot_messages)
    assert stored(service, 494) == (5, "")
    assert hostile_calls == []


def _client_id(service: Service) -> str:
    assert service.settings.b24_client_id is not None
    return service.settings.b24_client_id.get_secret_value()
