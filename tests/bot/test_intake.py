"""What one message may cost (bot/intake.py), end to end over HTTP against the sandbox portal.

The attack: one message of 3,300 `/help` lines used to become 3,300 jobs and 3,301 bot messages,
and delayed every supervisor behind it.
"""

from __future__ import annotations

import time

import pytest

from bot.bitrix.webhook import INTAKE
from bot.intake import MAX_COMMANDS_PER_MESSAGE, admit
from bot.models import AuthorKind, BitrixRoute, IncomingCommand, TooManyCommands
from bot.sandbox.portal import User
from tests.harness import Service, ServiceFactory, drained, eventually

FLOOD = "/help\n" * 3300  # 19,800 characters: inside Bitrix24's 20,000


def message(count: int, kind: AuthorKind = "staff") -> list[IncomingCommand]:
    route = BitrixRoute(dialog_id="27", author_dialog_id="27")
    return [
        IncomingCommand(
            key=f"m:{n}",
            source="bitrix",
            author_id=27,
            author_kind=kind,
            text="/help",
            received_at=time.time(),
            route=route,
        )
        for n in range(count)
    ]


@pytest.mark.parametrize(
    ("count", "kind", "supervisor", "keys", "notice"),
    [
        (0, "staff", True, [], None),
        (3, "staff", True, ["m:0", "m:1", "m:2"], None),
        (10, "staff", True, [f"m:{n}" for n in range(10)], None),
        (11, "staff", True, [*(f"m:{n}" for n in range(10)), "m:more"], 1),
        (3300, "staff", True, [*(f"m:{n}" for n in range(10)), "m:more"], 3290),
        (3300, "staff", False, ["m:0"], None),
        (3300, "extranet", True, ["m:0"], None),
        (1, "extranet", False, ["m:0"], None),
        (3300, "customer", True, [], None),
        (1, "customer", True, [], None),
    ],
)
def test_what_one_message_may_cost(
    count: int, kind: AuthorKind, supervisor: bool, keys: list[str], notice: int | None
) -> None:
    admitted = admit(message(count, kind), message_key="m", may_rate=lambda _: supervisor)
    assert [c.key for c in admitted] == keys
    # Every job after the first says nothing to someone who turns out not to be staff.
    assert [c.follows for c in admitted] == [n > 0 for n in range(len(admitted))]
    notices = [c.notice for c in admitted if c.notice is not None]
    assert notices == ([TooManyCommands(taken=10, skipped=notice)] if notice else [])
    assert all(c.text == "" for c in admitted if c.notice is not None)


@pytest.mark.parametrize(
    ("author", "replies"),
    [(27, MAX_COMMANDS_PER_MESSAGE + 1), (28, 1)],
    ids=["a supervisor: 10 and one notice", "not a supervisor: one reply"],
)
async def test_one_message_of_3300_commands_costs_at_most_eleven_jobs_and_replies(
    service: Service, author: int, replies: int
) -> None:
    await service.say(author, service.bot_id, FLOOD)
    storage = service.server.app[INTAKE].storage
    assert await storage.unfinished() <= replies  # stored before the event was answered
    await eventually(lambda: len(service.bot_messages()) >= replies)
    await drained(service)
    texts = [m.text for m in service.bot_messages()]
    assert len(texts) == len(await storage.audit()) == replies
    assert sum(t.startswith("[b]Оценка диалогов") for t in texts) == min(replies, 10)
    if author == 27:
        assert (
            texts.count(
                "Из одного сообщения выполняются только первые 10 команд; ещё 3\u00a0290 не "
                "выполнены: отправьте их другим сообщением."
            )
            == 1
        )


async def test_another_supervisor_is_answered_right_after_a_flood(service: Service) -> None:
    for author in (27, 28):
        await service.say(author, service.bot_id, FLOOD)
    await service.say(1, service.bot_id, "/rate 494 5 Молодец")
    private = service.portal.private_chat(1, service.bot_id).id
    [reply] = await eventually(lambda: service.bot_messages(private))
    assert reply.text.startswith("✅ Сохранено. Сессия 494")
    assert service.portal.sessions[494].vote_head == 5


async def test_a_message_delivered_twice_adds_no_second_notice(service: Service) -> None:
    portal, events = service.portal, service.events
    chat = portal.private_chat(27, service.bot_id)
    message = portal.post(chat.id, 27, "/rate 494 5\n" + FLOOD, via="user")
    form = events.message_form(portal.bots[service.bot_id], message, portal.users[27], chat, "")
    handler = portal.bots[service.bot_id].handlers["EVENT_MESSAGE_ADD"]
    for _ in range(2):
        assert (await events.post(handler, form)).status == 200
    await eventually(lambda: len(service.bot_messages()) >= MAX_COMMANDS_PER_MESSAGE + 1)
    await drained(service)
    assert len(service.bot_messages()) == MAX_COMMANDS_PER_MESSAGE + 1
    assert service.portal.sessions[494].vote_head == 5


@pytest.mark.parametrize(
    ("supervisors", "author", "event", "answer"),
    [
        ("*", 1211, "command", None),
        ("*", 1211, "message", None),
        ("1211", 1211, "message", None),
        ("*", 301, "message", "Оценивать сессии могут только сотрудники портала"),
        ("301", 301, "message", "Оценивать сессии могут только сотрудники портала"),
        ("*", 301, "command", "Оценивать сессии могут только сотрудники портала"),
        ("301", 301, "command", "Оценивать сессии могут только сотрудники портала"),
        ("*", 27, "command", "✅ Сохранено. Сессия 494"),
    ],
    ids=[
        "a customer's command, everyone may rate",
        "a customer's message (IS_CONNECTOR), everyone may rate",
        "a customer on the list",
        "an extranet user (IS_EXTRANET), everyone may rate",
        "an extranet user on the list",
        "an extranet user's command (no IS_* flags: looked up), everyone may rate",
        "an extranet user's command, on the list",
        "staff, everyone may rate",
    ],
)
async def test_customers_and_extranet_users_never_rate(
    start_service: ServiceFactory, supervisors: str, author: int, event: str, answer: str | None
) -> None:
    """A customer gets no reply at all (any reply could reach them); an extranet user is told."""
    service = await start_service(B24_SUPERVISOR_IDS=supervisors)
    portal, events = service.portal, service.events
    line = portal.chats[1157]
    line.members.add(service.bot_id)
    if event == "command":
        await service.say(author, "chat1157", "/rate 5 Молодец")
    else:  # a plain message event, as when the command is typed before it is registered
        message = portal.post(line.id, author, "/rate 5 Молодец", via="user")
        bot = portal.bots[service.bot_id]
        form = events.message_form(bot, message, portal.users[author], line, message.text)
        assert (await events.post(bot.handlers["EVENT_MESSAGE_ADD"], form)).status == 200
    if answer is None:
        storage = service.server.app[INTAKE].storage
        assert (await storage.unfinished(), await storage.audit()) == (0, [])
    else:
        await eventually(service.bot_messages)
        assert service.bot_messages()[-1].text.startswith(answer)
    assert service.portal.sessions[494].vote_head == (5 if author == 27 else 0)
    assert not any(m.to_customer for m in portal.messages.values() if m.author_id != author)


async def test_a_supervisor_is_not_called_a_guest_when_the_lookup_itself_is_refused(
    service: Service,
) -> None:
    """The attack on ourselves: a webhook made before the author lookup existed has no `im`
    scope, so every im.user.get is refused with insufficient_scope. That refusal says nothing
    about the author, yet every supervisor was told they were an extranet user."""
    [hook] = [h for h in service.portal.webhooks if h.user_id == 1]
    hook.scopes = hook.scopes - {"im"}
    reply = await service.reply_to(27, service.bot_id, "/rate 494 5")
    assert reply.text.startswith("Что-то пошло не так, оценка не сохранена")
    assert service.portal.sessions[494].vote_head == 0


NOT_STAFF = "Оценивать сессии могут только сотрудники портала"


@pytest.mark.parametrize(
    ("supervisors", "text", "answer"),
    [
        ("*", "/rate 494 5\n" * 3 + FLOOD, NOT_STAFF),
        ("*", FLOOD, "[b]Оценка диалогов"),
        ("301", "/rate 494 1 x\n" * 11, NOT_STAFF),
    ],
    ids=[
        "an extranet user's votes and help, everyone may rate",
        "an extranet user's help, everyone may rate",
        "an extranet user on the list",
    ],
)
async def test_an_extranet_user_s_typed_commands_get_one_reply_per_message(
    start_service: ServiceFactory, supervisors: str, text: str, answer: str
) -> None:
    """The attack: a typed command's event does not say who is an extranet user, so with
    `B24_SUPERVISOR_IDS=*` a guest's message of 11 commands ran 10 jobs and a notice: 11
    replies in the chat instead of one."""
    service = await start_service(B24_SUPERVISOR_IDS=supervisors)
    await service.say(301, "chat2001", text)
    await eventually(service.bot_messages)
    await drained(service)
    [reply] = service.bot_messages()
    assert reply.text.startswith(answer)
    assert service.votes() == 0


@pytest.mark.parametrize("event", ["command", "message"])
async def test_a_bitrix24_network_user_never_rates(
    start_service: ServiceFactory, event: str
) -> None:
    """The attack: a Bitrix24.Network user (`network`, IS_NETWORK: an account of another
    portal, no member of this portal's staff) was taken for staff, so with
    `B24_SUPERVISOR_IDS=*` they could rate. They are refused as an extranet user is."""
    service = await start_service(B24_SUPERVISOR_IDS="*")
    portal, events = service.portal, service.events
    portal.users[302] = User(302, "Гость", "Сети", network=True)
    if event == "command":
        await service.say(302, service.bot_id, "/rate 494 5 Молодец")
    else:  # a plain message event, as when the command is typed before it is registered
        chat = portal.private_chat(302, service.bot_id)
        message = portal.post(chat.id, 302, "/rate 494 5 Молодец", via="user")
        bot = portal.bots[service.bot_id]
        form = events.message_form(bot, message, portal.users[302], chat, message.text)
        assert (await events.post(bot.handlers["EVENT_MESSAGE_ADD"], form)).status == 200
    [reply] = await eventually(service.bot_messages)
    assert reply.text.startswith(NOT_STAFF)
    assert service.votes() == 0


@pytest.mark.parametrize(
    ("author", "to"),
    [(1211, "bot"), (1212, "chat1157")],
    ids=["a customer in a private chat", "a customer in a line not their own"],
)
async def test_a_customer_the_event_does_not_show_gets_no_answer(
    start_service: ServiceFactory, author: int, to: str
) -> None:
    """The attack: a typed command's event has no IS_CONNECTOR, and outside their own line
    nothing else shows a customer, so the lookup found them but they were answered "Only the
    portal's staff may rate": any answer could reach a customer."""
    service = await start_service(B24_SUPERVISOR_IDS="*")
    await service.say(author, service.bot_id if to == "bot" else to, "/rate 494 5 Молодец")
    await drained(service)
    assert service.bot_messages() == []
    assert service.votes() == 0
