"""The fake's Bot API methods, called by real aiogram over HTTP."""

from __future__ import annotations

import aiohttp
import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramUnauthorizedError
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeChat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    ReplyParameters,
)
from aiohttp.test_utils import TestServer

from bot.sandbox.telegram.seed import BOT_ID, FORUM, SUPERVISORS_GROUP
from bot.sandbox.telegram.world import TelegramWorld
from tests.bot.sandbox.telegram.conftest import aiogram_bot
from tests.harness import telegram_api_url

STARS = InlineKeyboardMarkup(
    inline_keyboard=[
        [InlineKeyboardButton(text=f"{n}★", callback_data=f"rate:494:{n}") for n in (1, 5)]
    ]
)


async def test_get_me_is_the_bot(bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (BOT_ID, True, "SandboxRatingBot")
    assert me.can_read_all_group_messages is False  # group privacy on, as BotFather sets it


async def test_an_unknown_token_is_401(sandbox: TestServer) -> None:
    stranger = aiogram_bot(sandbox, "42:not-the-token")
    try:
        with pytest.raises(TelegramUnauthorizedError, match="Unauthorized"):
            await stranger.get_me()
    finally:
        await stranger.session.close()


@pytest.mark.parametrize(
    ("path", "status", "description"),
    [
        ("/botTOKEN/getMe", 200, None),
        ("/botTOKEN/GETME", 200, None),  # method names are case-insensitive
        ("/botTOKEN/getMeNot", 404, "Not Found"),
        ("/bot1:wrong/getMe", 401, "Unauthorized"),
    ],
)
async def test_raw_http_answers(
    sandbox: TestServer,
    telegram_world: TelegramWorld,
    http: aiohttp.ClientSession,
    path: str,
    status: int,
    description: str | None,
) -> None:
    url = telegram_api_url(sandbox) + path.replace("TOKEN", telegram_world.token)
    async with http.post(url) as answer:
        body = await answer.json()
    assert answer.status == status
    assert body["ok"] is (status == 200)
    assert body.get("description") == description
    if status != 200:
        assert body["error_code"] == status


async def test_send_message_stores_the_parsed_text(
    bot: Bot, telegram_world: TelegramWorld
) -> None:
    sent = await bot.send_message(
        SUPERVISORS_GROUP,
        "<b>Сессия 494</b>: 5 &lt;3",
        parse_mode="HTML",
        reply_markup=STARS,
        link_preview_options=LinkPreviewOptions(is_disabled=True),
    )
    assert sent.text == "Сессия 494: 5 <3"
    assert sent.from_user is not None
    assert sent.from_user.id == BOT_ID
    assert sent.entities is not None
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [("bold", 0, 10)]
    assert sent.reply_markup is not None
    assert sent.reply_markup.model_dump(exclude_none=True) == STARS.model_dump(exclude_none=True)
    stored = telegram_world.message(SUPERVISORS_GROUP, sent.message_id)
    assert stored is not None
    assert (stored.text, stored.parse_mode) == ("Сессия 494: 5 <3", "HTML")
    assert stored.link_preview_options == {"is_disabled": True}


@pytest.mark.parametrize(
    ("text", "parse_mode", "description"),
    [
        (
            "Молодец <3",
            "HTML",
            "Bad Request: can't parse entities: Unclosed start tag at byte offset 15",
        ),
        (
            "5 < 4",
            "HTML",
            'Bad Request: can\'t parse entities: Unsupported start tag "" at byte offset 2',
        ),
        (
            "Молодец.",
            "MarkdownV2",
            (
                "Bad Request: can't parse entities: Character '.' is reserved and must be escaped "
                "with the preceding '\\'"
            ),
        ),
        ("   ", None, "Bad Request: message text is empty"),
        ("<b></b>", "HTML", "Bad Request: message text is empty"),
        ("x" * 4097, None, "Bad Request: message is too long"),
        (
            "ok",
            "Markdown3",
            "Bad Request: can't parse entities: Unsupported parse_mode 'Markdown3'",
        ),
    ],
)
async def test_send_message_refuses_what_telegram_refuses(
    bot: Bot, text: str, parse_mode: str | None, description: str
) -> None:
    with pytest.raises(TelegramBadRequest) as caught:
        await bot.send_message(SUPERVISORS_GROUP, text, parse_mode=parse_mode)
    assert caught.value.message == description


@pytest.mark.parametrize(
    ("chat_id", "kwargs", "description"),
    [
        (-999, {}, "Bad Request: chat not found"),
        (SUPERVISORS_GROUP, {"message_thread_id": 2}, "Bad Request: message thread not found"),
        (FORUM, {"message_thread_id": 99}, "Bad Request: message thread not found"),
        (
            SUPERVISORS_GROUP,
            {"reply_parameters": ReplyParameters(message_id=424242)},
            "Bad Request: message to be replied not found",
        ),
        (
            SUPERVISORS_GROUP,
            {
                "reply_markup": InlineKeyboardMarkup(
                    inline_keyboard=[[InlineKeyboardButton(text="x", callback_data="x" * 65)]]
                )
            },
            "Bad Request: BUTTON_DATA_INVALID",
        ),
    ],
)
async def test_send_message_checks_its_target(
    bot: Bot, chat_id: int, kwargs: dict[str, object], description: str
) -> None:
    with pytest.raises(TelegramBadRequest) as caught:
        await bot.send_message(chat_id, "ok", **kwargs)  # type: ignore[arg-type]
    assert caught.value.message == description


async def test_send_message_into_a_topic_and_as_a_reply(
    bot: Bot, telegram_world: TelegramWorld
) -> None:
    typed = telegram_world.type(5001, FORUM, "/rate 494 5", thread_id=2)
    assert typed is not None
    asked = typed["message"]["message_id"]
    sent = await bot.send_message(
        FORUM, "Сохранено", message_thread_id=2, reply_parameters=ReplyParameters(message_id=asked)
    )
    assert (sent.message_thread_id, sent.is_topic_message) == (2, True)
    assert sent.reply_to_message is not None
    assert sent.reply_to_message.message_id == asked
    missing = ReplyParameters(message_id=424242, allow_sending_without_reply=True)
    alone = await bot.send_message(FORUM, "ok", reply_parameters=missing)
    assert alone.reply_to_message is None


async def test_supergroups_number_their_own_messages(bot: Bot) -> None:
    first = await bot.send_message(FORUM, "a")
    await bot.send_message(SUPERVISORS_GROUP, "b")
    second = await bot.send_message(FORUM, "c")
    assert second.message_id == first.message_id + 1


async def test_edit_message_text_removes_the_keyboard(
    bot: Bot, telegram_world: TelegramWorld
) -> None:
    sent = await bot.send_message(SUPERVISORS_GROUP, "Оценка?", reply_markup=STARS)
    edited = await bot.edit_message_text(
        text="Оценка: <b>5</b>",
        chat_id=SUPERVISORS_GROUP,
        message_id=sent.message_id,
        parse_mode="HTML",
    )
    assert not isinstance(edited, bool)
    assert (edited.text, edited.reply_markup, edited.edit_date is not None) == (
        "Оценка: 5",
        None,
        True,
    )
    stored = telegram_world.message(SUPERVISORS_GROUP, sent.message_id)
    assert stored is not None
    assert stored.reply_markup is None


@pytest.mark.parametrize(
    ("message_id", "text", "description"),
    [
        (424242, "x", "Bad Request: message to edit not found"),
        (
            None,
            "Оценка?",
            (
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message"
            ),
        ),
    ],
)
async def test_edit_message_text_refusals(
    bot: Bot, message_id: int | None, text: str, description: str
) -> None:
    sent = await bot.send_message(SUPERVISORS_GROUP, "Оценка?")
    with pytest.raises(TelegramBadRequest) as caught:
        await bot.edit_message_text(
            text=text, chat_id=SUPERVISORS_GROUP, message_id=message_id or sent.message_id
        )
    assert caught.value.message == description


async def test_a_user_message_cannot_be_edited(bot: Bot, telegram_world: TelegramWorld) -> None:
    typed = telegram_world.type(5001, SUPERVISORS_GROUP, "/help")
    assert typed is not None
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text(
            text="x", chat_id=SUPERVISORS_GROUP, message_id=typed["message"]["message_id"]
        )


async def test_answer_callback_query_once(bot: Bot, telegram_world: TelegramWorld) -> None:
    sent = await bot.send_message(SUPERVISORS_GROUP, "Оценка?", reply_markup=STARS)
    pressed = telegram_world.press(5001, SUPERVISORS_GROUP, sent.message_id, "rate:494:5")
    assert pressed is not None
    query_id = pressed["callback_query"]["id"]
    assert await bot.answer_callback_query(query_id, text="Сохранено") is True
    assert telegram_world.callback_queries[query_id]["answer"] == {
        "text": "Сохранено",
        "show_alert": False,
    }
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query_id)


async def test_commands_per_scope_and_language(bot: Bot) -> None:
    ru = [BotCommand(command="rate", description="Оценить сессию")]
    en = [BotCommand(command="rate", description="Rate a session")]
    groups = BotCommandScopeAllGroupChats()
    assert await bot.set_my_commands(ru, scope=groups, language_code="ru")
    assert await bot.set_my_commands(en, scope=groups)
    assert _pairs(await bot.get_my_commands(scope=groups, language_code="ru")) == _pairs(ru)
    assert _pairs(await bot.get_my_commands(scope=groups)) == _pairs(en)
    assert await bot.get_my_commands() == []
    assert await bot.get_my_commands(scope=BotCommandScopeChat(chat_id=SUPERVISORS_GROUP)) == []


def _pairs(commands: list[BotCommand]) -> list[tuple[str, str]]:
    return [(c.command, c.description) for c in commands]


@pytest.mark.parametrize(
    ("command", "description"),
    [
        ("Rate", "Bad Request: BOT_COMMAND_INVALID"),
        ("rate-it", "Bad Request: BOT_COMMAND_INVALID"),
        ("оценка", "Bad Request: BOT_COMMAND_INVALID"),  # Latin letters, digits and _ only
    ],
)
async def test_set_my_commands_checks_names(bot: Bot, command: str, description: str) -> None:
    with pytest.raises(TelegramBadRequest) as caught:
        await bot.set_my_commands([BotCommand(command=command, description="x")])
    assert caught.value.message == description


async def test_calls_are_recorded_for_inspection(
    bot: Bot, sandbox: TestServer, http: aiohttp.ClientSession
) -> None:
    await bot.send_message(SUPERVISORS_GROUP, "<b>ok</b>", parse_mode="HTML")
    async with http.get(sandbox.make_url("/_sandbox/telegram/calls")) as answer:
        calls = await answer.json()
    assert [(c["method"], c["status"]) for c in calls] == [("sendmessage", 200)]
    assert calls[0]["params"]["text"] == "<b>ok</b>"
    async with http.get(
        sandbox.make_url("/_sandbox/telegram/messages"), params={"from_bot": "1"}
    ) as answer:
        [message] = await answer.json()
    assert (message["text"], message["parse_mode"]) == ("ok", "HTML")
