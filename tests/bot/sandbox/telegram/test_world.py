"""Acting as Telegram users, from Python and over /_sandbox/telegram/: each act produces the
update Telegram would send, and aiogram reads it."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiogram import Bot
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Update
from aiohttp.test_utils import TestServer

from bot.sandbox.telegram.seed import CHANNEL, FEED, FORUM, SUPERVISORS_GROUP, seeded_world
from bot.sandbox.telegram.world import TelegramWorld, WorldError

STARS = InlineKeyboardMarkup(
    inline_keyboard=[[InlineKeyboardButton(text="5★", callback_data="rate:494:5")]]
)


async def act(http: aiohttp.ClientSession, sandbox: TestServer, path: str, **body: Any) -> Any:
    async with http.post(sandbox.make_url(f"/_sandbox/telegram/{path}"), json=body) as answer:
        assert answer.status == 200, await answer.text()
        return (await answer.json())["update"]


async def test_typing_over_http_gives_a_message_update(
    bot: Bot, sandbox: TestServer, http: aiohttp.ClientSession
) -> None:
    first = await act(http, sandbox, "type", user_id=5001, chat_id=SUPERVISORS_GROUP, text="/help")
    second = await act(
        http, sandbox, "type", user_id=5002, chat_id=FORUM, text="/rate 494 5", message_thread_id=2
    )
    assert second["update_id"] == first["update_id"] + 1
    updates = await bot.get_updates()
    assert [u.update_id for u in updates] == [first["update_id"], second["update_id"]]
    topic = updates[1].message
    assert topic is not None
    assert (topic.chat.is_forum, topic.message_thread_id, topic.is_topic_message) == (
        True,
        2,
        True,
    )


async def test_a_private_chat_opens_when_the_user_writes(
    bot: Bot, telegram_world: TelegramWorld
) -> None:
    telegram_world.type(5009, 5009, "/start abc123")
    [update] = await bot.get_updates()
    assert update.message is not None
    assert (update.message.chat.type, update.message.chat.id) == ("private", 5009)
    assert update.message.from_user is not None
    assert update.message.from_user.language_code == "en"


@pytest.mark.parametrize(
    ("privacy", "text", "heard"),
    [
        (True, "/rate 494 5", True),
        (True, "/rate@SandboxRatingBot 494 5", True),
        (True, "просто разговор", False),
        (False, "просто разговор", True),
    ],
)
def test_group_privacy_mode(privacy: bool, text: str, heard: bool) -> None:
    world = seeded_world(privacy=privacy)
    assert (world.type(5001, SUPERVISORS_GROUP, text) is not None) is heard
    assert world.type(5001, 5001, text) is not None  # private chats: always


async def test_a_reply_to_the_bot_is_heard_with_privacy_on(
    bot: Bot, telegram_world: TelegramWorld
) -> None:
    sent = await bot.send_message(SUPERVISORS_GROUP, "Оценка?")
    update = telegram_world.type(5001, SUPERVISORS_GROUP, "пять", reply_to=sent.message_id)
    assert update is not None
    assert update["message"]["reply_to_message"]["message_id"] == sent.message_id


async def test_pressing_a_button_gives_a_callback_query(
    bot: Bot, sandbox: TestServer, http: aiohttp.ClientSession
) -> None:
    sent = await bot.send_message(SUPERVISORS_GROUP, "Оценка?", reply_markup=STARS)
    await act(
        http,
        sandbox,
        "press",
        user_id=5002,
        chat_id=SUPERVISORS_GROUP,
        message_id=sent.message_id,
        data="rate:494:5",
    )
    [update] = await bot.get_updates()
    query = update.callback_query
    assert query is not None
    assert (query.from_user.id, query.data) == (5002, "rate:494:5")
    assert query.message is not None
    assert query.message.message_id == sent.message_id
    assert await bot.answer_callback_query(query.id)


@pytest.mark.parametrize(
    ("user_id", "data", "problem"),
    [
        (5001, "rate:494:4", "has no button 'rate:494:4'"),
        (5002, "rate:494:5", "is not a member"),  # not in the feed chat
    ],
)
async def test_only_existing_buttons_can_be_pressed(
    bot: Bot, telegram_world: TelegramWorld, user_id: int, data: str, problem: str
) -> None:
    sent = await bot.send_message(FEED, "Оценка?", reply_markup=STARS)
    with pytest.raises(WorldError, match=problem):
        telegram_world.press(user_id, FEED, sent.message_id, data)


async def test_a_removed_keyboard_cannot_be_pressed(
    bot: Bot, telegram_world: TelegramWorld
) -> None:
    sent = await bot.send_message(SUPERVISORS_GROUP, "Оценка?", reply_markup=STARS)
    await bot.edit_message_text(text="5★", chat_id=SUPERVISORS_GROUP, message_id=sent.message_id)
    with pytest.raises(WorldError, match="has no button"):
        telegram_world.press(5001, SUPERVISORS_GROUP, sent.message_id, "rate:494:5")


async def test_a_channel_post_has_no_sender(
    bot: Bot, sandbox: TestServer, http: aiohttp.ClientSession
) -> None:
    await act(http, sandbox, "channel_post", chat_id=CHANNEL, text="/rate 494 5")
    [update] = await bot.get_updates()
    post = update.channel_post
    assert post is not None
    assert post.from_user is None
    assert post.sender_chat is not None
    assert post.sender_chat.id == CHANNEL
    assert post.entities is not None
    assert post.entities[0].type == "bot_command"


async def test_an_anonymous_administrator_posts_as_the_group(
    bot: Bot, sandbox: TestServer, http: aiohttp.ClientSession
) -> None:
    await act(http, sandbox, "type", user_id=5003, chat_id=FORUM, text="/rate 494 5", as_chat=True)
    [update] = await bot.get_updates()
    message = update.message
    assert message is not None
    assert message.sender_chat is not None
    assert message.sender_chat.id == FORUM
    assert message.from_user is not None  # Telegram's fake sender, not the person
    assert (message.from_user.username, message.from_user.is_bot) == ("GroupAnonymousBot", True)


def test_only_a_supergroup_is_posted_to_as_the_chat() -> None:
    world = seeded_world()
    with pytest.raises(WorldError, match="supergroup"):
        world.type(5003, SUPERVISORS_GROUP, "/rate 494 5", as_chat=True)


async def test_removing_the_bot_over_http(
    bot: Bot, sandbox: TestServer, http: aiohttp.ClientSession
) -> None:
    update = await act(http, sandbox, "remove_bot", chat_id=SUPERVISORS_GROUP, by_user_id=5003)
    assert Update.model_validate(update).my_chat_member is not None
    [heard] = await bot.get_updates()
    assert heard.my_chat_member is not None
    assert heard.my_chat_member.new_chat_member.status == "left"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("type", {"user_id": 5002, "chat_id": FEED, "text": "hi"}),  # not a member
        ("type", {"user_id": 5001, "chat_id": -1, "text": "hi"}),  # no such chat
        ("type", {"user_id": 5001, "chat_id": CHANNEL, "text": "hi"}),
        ("type", {"user_id": 5001, "chat_id": FORUM, "text": "hi", "message_thread_id": 9}),
        ("channel_post", {"chat_id": SUPERVISORS_GROUP, "text": "hi"}),
        ("press", {"user_id": 5001, "chat_id": SUPERVISORS_GROUP, "message_id": 1, "data": "x"}),
        ("type", {"user_id": 5001}),
    ],
)
async def test_impossible_acts_are_400(
    sandbox: TestServer, http: aiohttp.ClientSession, path: str, body: dict[str, Any]
) -> None:
    async with http.post(sandbox.make_url(f"/_sandbox/telegram/{path}"), json=body) as answer:
        assert answer.status == 400


async def test_inspection_of_the_world(
    bot: Bot, sandbox: TestServer, http: aiohttp.ClientSession, telegram_world: TelegramWorld
) -> None:
    telegram_world.type(5001, SUPERVISORS_GROUP, "/help")
    await bot.send_message(SUPERVISORS_GROUP, "Помощь")
    async with http.get(
        sandbox.make_url("/_sandbox/telegram/messages"), params={"chat_id": str(SUPERVISORS_GROUP)}
    ) as answer:
        messages = await answer.json()
    assert [(m["from"]["id"], m["text"]) for m in messages] == [
        (5001, "/help"),
        (telegram_world.bot.id, "Помощь"),
    ]
    async with http.get(sandbox.make_url("/_sandbox/telegram/updates")) as answer:
        updates = await answer.json()
    assert len(updates["pending"]) == 1
    async with http.get(sandbox.make_url("/_sandbox/telegram/world")) as answer:
        world = await answer.json()
    assert world["bot"]["username"] == "SandboxRatingBot"
    assert {c["id"] for c in world["chats"]} >= {SUPERVISORS_GROUP, FORUM, FEED, CHANNEL}
