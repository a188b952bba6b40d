"""Replies through Chatbots 2.0 (issue 9 item 5; protocol notes §00 items 4, 6, 7, 9, §0 item 13).

A fetch-mode bot is registered over the sandbox's REST API, users type in the sandbox, the
events are fetched with `imbot.v2.Event.get` and admitted as the poller admits them, and the
replies go through a real BitrixClient behind the Coalescer, so every v2 call travels inside
`batch` as it does under load.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from bot.bitrix.client import BitrixClient
from bot.bitrix.coalesce import Coalescer
from bot.bitrix.replies import ANSWER_WINDOW
from bot.bitrix.replies_v2 import ANSWER, SEND, UPDATE, BitrixV2Replies
from bot.bitrix.v2events import admit_fetched
from bot.dispatch import Handled
from bot.errors import BitrixBotNotReady
from bot.jobs import JobRunner, RetryRules, session_of
from bot.metrics import Metrics
from bot.models import IncomingCommand, Reply, ReplyButton
from bot.routing import ReplyRouter
from bot.sandbox.app import EVENTS
from bot.sandbox.events import EventSender
from bot.sandbox.imbot import ANSWER_WINDOW as PORTAL_WINDOW
from bot.sandbox.portal import Message, Portal
from bot.storage import open_storage
from bot.texts import render
from tests.bbcodes import HOSTILE, live_markup
from tests.bot.sandbox.v2.test_methods import TOKEN, register_rate, register_v2, v2
from tests.harness import eventually

GROUP, LINE = "chat2001", "chat1157"
SUPERVISOR = 27
STARS = tuple(ReplyButton(text=f"{n}", command="rate", params=f"494 {n}") for n in (1, 5))


@dataclass
class Fetching:
    http: aiohttp.ClientSession
    sandbox: TestServer
    portal: Portal
    sender: EventSender
    bot_id: int
    replies: BitrixV2Replies
    offset: int | None = None

    async def command(
        self, text: str, to: str | None = None, *, mention: bool = False
    ) -> IncomingCommand:
        """`text` typed by the supervisor to the bot (or into the chat `to`), fetched and
        admitted: the first of its jobs."""
        where: int | str = to or self.bot_id
        await self.sender.send_message(
            SUPERVISOR, where, text, mention=self.bot_id if mention else None
        )
        return (await self.fetched())[0]

    async def fetched(self) -> list[IncomingCommand]:
        status, answer = await v2(
            self.http,
            self.sandbox,
            "Event.get",
            botId=self.bot_id,
            botToken=TOKEN,
            offset=self.offset,  # acknowledges what the last fetch got
        )
        assert status == 200, answer
        events = answer["result"]["events"]
        self.offset = answer["result"]["nextOffset"]
        page = admit_fetched(events, received_at=time.time(), may_rate=lambda _: True)
        assert page.commands, events
        return page.commands

    async def reply(
        self, job: IncomingCommand, reply: Reply, received_at: float | None = None
    ) -> None:
        await self.replies.send(
            job.bitrix_route, reply, job.received_at if received_at is None else received_at
        )

    def posted(self) -> list[Message]:
        return [m for m in self.portal.messages.values() if m.author_id == self.bot_id]

    def private_chat(self) -> int:
        return self.portal.private_chat(SUPERVISOR, self.bot_id).id

    def calls(self, method: str) -> list[str | None]:
        """The error of each call of `method` (None: it succeeded), inside batch or not."""
        return [c.error for c in self.portal.calls if c.method == method.lower()]


@pytest.fixture
async def fetching(
    http: aiohttp.ClientSession,
    sandbox: TestServer,
    portal: Portal,
    make_client: Callable[..., BitrixClient],
) -> AsyncIterator[Fetching]:
    """A fetch-mode bot supporting open lines with a common `/rate`, and its replies."""
    bot_id = await register_v2(http, sandbox, isSupportOpenline=True)
    await register_rate(http, sandbox, bot_id)
    client = make_client()
    coalescer = Coalescer(client, client.limiter)
    replies = BitrixV2Replies(coalescer, TOKEN, lambda: bot_id)
    yield Fetching(http, sandbox, portal, sandbox.app[EVENTS], bot_id, replies)
    await coalescer.close()


LATE = ANSWER_WINDOW + 1


@pytest.mark.parametrize(
    ("to", "member", "late", "via", "where", "system"),
    [
        # A fresh command is answered as one, where it was typed.
        (None, False, "", ANSWER, "private", False),
        (GROUP, True, "", ANSWER, "group", False),
        (GROUP, False, "", ANSWER, "group", True),  # Bitrix24's system answer (command-answer.md)
        # Late by our clock, or typed long before it was fetched (the service was down): a
        # message, since a late command answer is `{"result": true}` and posts nothing.
        (None, False, "received", SEND, "private", False),
        (None, False, "queued", SEND, "private", False),
        # Late in a group: a v2 event does not say whether the bot is in it, so privately.
        (GROUP, True, "received", SEND, "private", False),
        (GROUP, True, "queued", SEND, "private", False),
        # An open line: always the supervisor's private chat, never the line (§00 item 7).
        (LINE, True, "", SEND, "private", False),
        (LINE, False, "", SEND, "private", False),
        (LINE, True, "queued", SEND, "private", False),
    ],
)
async def test_a_reply_goes_where_its_command_came_from_and_never_to_a_customer(
    fetching: Fetching,
    to: str | None,
    member: bool,
    late: str,
    via: str,
    where: str,
    system: bool,
) -> None:
    portal = fetching.portal
    if to and member:
        portal.chats[int(to.removeprefix("chat"))].members.add(fetching.bot_id)
    if late == "queued":
        portal.advance_clock(-(PORTAL_WINDOW + 1))  # typed then, fetched now
    job = await fetching.command("/rate 494 5 Молодец", to)
    portal.advance_clock(-portal.clock_offset)
    received_at = job.received_at - LATE if late == "received" else None
    await fetching.reply(job, Reply(text="✅ Сохранено."), received_at)
    [message] = fetching.posted()
    chat = fetching.private_chat() if where == "private" else 2001
    assert (message.via, message.chat_id, message.system) == (via, chat, system)
    assert message.text == "✅ Сохранено."
    assert not any(m.to_customer for m in portal.messages.values())
    sent = {c.batch_of for c in portal.calls if c.method in (ANSWER.lower(), SEND.lower())}
    assert sent == {"batch"}  # coalesced, as under load


@pytest.mark.parametrize(("leaves", "where"), [(False, "group"), (True, "private")])
async def test_a_message_in_a_group_goes_past_any_connector_or_privately_once_the_bot_left(
    fetching: Fetching, leaves: bool, where: str
) -> None:
    """A message event (a `/Rate` is no command, §00 item 5) comes only from a chat the bot is
    in; a post there after it left is 403 ACCESS_DENIED (chat-message-send.md)."""
    group = fetching.portal.chats[2001]
    group.members.add(fetching.bot_id)
    job = await fetching.command("/Rate 494 5", GROUP, mention=True)
    if leaves:
        group.members.discard(fetching.bot_id)
    with capture_logs() as logs:
        await fetching.reply(job, Reply(text="Не знаю команду"))
    [message] = fetching.posted()
    assert message.chat_id == (fetching.private_chat() if where == "private" else 2001)
    [first, *_] = [c for c in fetching.portal.calls if c.method == SEND.lower()]
    assert first.params["fields"]["skipConnector"] == "Y"  # outside the private chat
    assert TOKEN not in repr(logs)


async def test_a_keyboard_goes_in_the_v2_format_and_a_click_settles_it_in_place(
    fetching: Fetching,
) -> None:
    job = await fetching.command("/rate 494")
    await fetching.reply(job, Reply(text="Выберите оценку:", buttons=STARS))
    [prompt] = fetching.posted()
    assert int(prompt.keyboard["BOT_ID"]) == fetching.bot_id  # routes the click (§6.9)
    assert prompt.keyboard["BUTTONS"] == [
        {"TEXT": b.text, "COMMAND": "rate", "COMMAND_PARAMS": b.params, "DISPLAY": "LINE"}
        for b in STARS
    ]
    await fetching.sender.click(SUPERVISOR, prompt.id, 1)
    [click] = await fetching.fetched()
    assert (click.text, click.route.keyboard_message_id) == ("/rate 494 5", prompt.id)
    await fetching.reply(click, Reply(text="✅ 5/5", settled=True))
    assert [(m.id, m.text, m.keyboard) for m in fetching.posted()] == [(prompt.id, "✅ 5/5", None)]
    assert fetching.calls(UPDATE) == [None]


@pytest.mark.parametrize("gone", ["deleted", "not the bot's"])
async def test_a_keyboard_the_portal_will_not_edit_gets_the_answer_as_a_new_message(
    fetching: Fetching, gone: str
) -> None:
    job = await fetching.command("/rate 494", GROUP)
    fetching.portal.chats[2001].members.add(fetching.bot_id)
    await fetching.reply(job, Reply(text="Выберите оценку:", buttons=STARS))
    [prompt] = fetching.posted()
    await fetching.sender.click(SUPERVISOR, prompt.id, 1)
    [click] = await fetching.fetched()
    if gone == "deleted":
        del fetching.portal.messages[prompt.id]
    else:
        prompt.author_id = SUPERVISOR
    await fetching.reply(click, Reply(text="✅ 5/5", settled=True))
    [answer] = [m for m in fetching.posted() if m.text == "✅ 5/5"]
    assert (answer.via, answer.chat_id, answer.keyboard) == (SEND, 2001, None)
    assert fetching.calls(UPDATE) == ["ACCESS_DENIED"]


# Replies as the core renders them, quoting what a user typed: markup, and batch syntax that
# Bitrix24 would rewrite inside a batch command (§4.3).
HOSTILE_TEXTS = [
    render("parse.unknown_command", "ru", command=text)
    for text in [*HOSTILE, "$result[call]", "$result[call][id] $result_error[x]"]
]


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
@pytest.mark.parametrize("to", [None, LINE])
async def test_a_hostile_reply_text_arrives_verbatim_as_plain_text(
    fetching: Fetching, text: str, to: str | None
) -> None:
    job = await fetching.command("/rate 494 5", to)
    await fetching.reply(job, Reply(text=text, buttons=STARS))
    [message] = fetching.posted()
    assert message.text == text.strip()  # not batch syntax: no `$result[...]` substituted
    assert live_markup(message.text) == []


async def test_a_command_queued_in_webhook_mode_is_answered_by_a_message(
    fetching: Fetching,
) -> None:
    """Its command id was the classic bot's: never answered through imbot.v2.Command.answer."""
    job = await fetching.command("/rate 494 5")
    classic = job.bitrix_route.model_copy(update={"api": "v1", "queued_at": None})
    await fetching.replies.send(classic, Reply(text="✅ Сохранено."), time.time())
    [message] = fetching.posted()
    assert (message.via, message.chat_id) == (SEND, fetching.private_chat())
    assert fetching.calls(ANSWER) == []


async def test_no_bot_id_yet_postpones_the_reply_and_posts_nothing(
    fetching: Fetching, make_client: Callable[..., BitrixClient]
) -> None:
    job = await fetching.command("/rate 494 5")
    calls = len(fetching.portal.calls)
    replies = BitrixV2Replies(make_client(), TOKEN, lambda: None)
    with capture_logs() as logs, pytest.raises(BitrixBotNotReady) as raised:
        await replies.send(job.bitrix_route, Reply(text="✅ Сохранено."), job.received_at)
    assert raised.value.retryable  # the JobRunner postpones the job: the reply is not lost
    assert TOKEN not in f"{raised.value} {logs!r}"
    assert (fetching.posted(), len(fetching.portal.calls)) == ([], calls)


async def test_a_silent_reply_calls_nothing(fetching: Fetching) -> None:
    job = await fetching.command("/rate 494 5")
    calls = len(fetching.portal.calls)
    await fetching.reply(job, Reply(text=""))
    assert len(fetching.portal.calls) == calls


def test_the_answer_window_leaves_room_within_bitrix24s_ten_minutes() -> None:
    assert ANSWER_WINDOW <= PORTAL_WINDOW / 2  # room for a clock between us and the portal


async def test_a_reply_through_the_client_alone_reaches_the_portal_too(
    fetching: Fetching, make_client: Callable[..., BitrixClient]
) -> None:
    """Outside batch as inside it, the v2 parameters keep their camelCase names (`botToken`,
    `botId`, `fields`): upper-cased as v1's are, Bitrix24 does not know them."""
    job = await fetching.command("/rate 494 5")
    replies = BitrixV2Replies(make_client(), TOKEN, lambda: fetching.bot_id)
    await replies.send(job.bitrix_route, Reply(text="✅ Сохранено."), job.received_at)
    [message] = fetching.posted()
    assert (message.via, message.text) == (ANSWER, "✅ Сохранено.")


async def test_a_reply_waiting_for_the_bots_registration_is_sent_once_it_is_registered(
    fetching: Fetching, make_client: Callable[..., BitrixClient], tmp_path: Path
) -> None:
    """The JobRunner postpones a job whose reply has no bot id to go with (BOT_NOT_READY)
    and sends it when the bot is registered again: the reply is late, not lost."""
    registered: list[int] = []
    replies = BitrixV2Replies(make_client(), TOKEN, lambda: next(iter(registered), None))
    storage = await open_storage(f"sqlite:///{tmp_path / 'bot.sqlite3'}", session_of=session_of)

    async def execute(_incoming: IncomingCommand, _may_retry: bool) -> Handled:
        return Handled(Reply(text="✅ Сохранено."), "saved")

    metrics = Metrics()
    rules = RetryRules(first_wait=0.01, longest_wait=0.05)
    runner = JobRunner(
        storage, execute, ReplyRouter(replies.send).send, workers=1, rules=rules, metrics=metrics
    )
    try:
        await storage.enqueue([await fetching.command("/rate 494 5")], limit=10, user_limit=10)
        runner.wake()
        postponed = "bot_jobs_postponed_total"
        await eventually(lambda: metrics.registry.get_sample_value(postponed))
        assert fetching.posted() == []
        registered.append(fetching.bot_id)
        [message] = await eventually(fetching.posted)
        assert (message.via, message.text) == (ANSWER, "✅ Сохранено.")
        for _ in range(500):  # the job ends once the reply is sent
            if not await storage.unfinished():
                break
            await asyncio.sleep(0.01)
        [entry] = await storage.audit()
        assert (entry.outcome, entry.reply) == ("saved", "✅ Сохранено.")
    finally:
        await runner.stop(grace=1)
        await storage.close()
