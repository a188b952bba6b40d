"""Polling mode: which updates become jobs, stored before their offset is confirmed."""

from __future__ import annotations

import asyncio

import pytest

from bot.links import StoredLinks, link_key
from bot.models import ButtonNotOffered, NoAuthor, TelegramRoute
from bot.sandbox.telegram.seed import CHANNEL, FORUM
from bot.sandbox.telegram.world import TelegramWorld, TgChat, TgFault, TgMessage
from bot.state import CORE, SETTINGS
from bot.telegram.side import TELEGRAM
from tests.bot.telegram.conftest import GROUP, LINKED, STRANGER, Start, called, from_bot
from tests.harness import eventually, write_locked

UNLISTED_CHANNEL = -1_009_009
REFUSED = ButtonNotOffered()


async def test_polling_starts_by_deleting_the_webhook_and_naming_the_commands(
    start: Start, telegram_world: TelegramWorld
) -> None:
    service = await start()
    await eventually(lambda: called(telegram_world, "getUpdates"))  # a long poll answered
    methods = [call.method for call in telegram_world.calls]
    assert methods.index("deletewebhook") < methods.index("getupdates")
    menus = {
        key: [c["command"] for c in commands] for key, commands in telegram_world.commands.items()
    }
    assert menus == {
        ("all_group_chats", ""): ["rate", "help"],
        ("all_group_chats", "ru"): ["rate", "help"],
        ("all_private_chats", ""): ["link", "unlink", "help"],
        ("all_private_chats", "ru"): ["link", "unlink", "help"],
    }
    assert service.app[TELEGRAM].username == "SandboxRatingBot"


@pytest.mark.parametrize(
    ("chat_id", "text", "expected"),
    [
        (GROUP, "/rate 494 5 Молодец", ["/rate 494 5 Молодец"]),
        (GROUP, "/rate@SandboxRatingBot 494 5", ["/rate 494 5"]),
        (GROUP, "/rate@sandboxratingbot 494 5", ["/rate 494 5"]),
        (GROUP, "/rate@OtherBot 494 5", []),
        (GROUP, "just talking", []),
        (GROUP, "/rate 1 5\n/rate 2 4", ["/rate 1 5", "/rate 2 4"]),
        (FORUM, "/rate 494 5", []),  # a chat not allowed: a log line only
        (LINKED, "/rate 494 5", []),  # no rating in a private chat
        (LINKED, "/start c0de", ["/start c0de"]),
        (LINKED, "/help", ["/help"]),
    ],
)
async def test_which_messages_become_commands(
    start: Start, telegram_world: TelegramWorld, chat_id: int, text: str, expected: list[str]
) -> None:
    telegram_world.privacy = False  # every message reaches the bot: the adapter must choose
    service = await start()
    telegram_world.type(LINKED, chat_id, text)
    marker = telegram_world.type(LINKED, GROUP, "/help")  # handled after the one above
    assert marker is not None
    last = f"tg:{marker['update_id']}:0"
    await eventually(lambda: any(j.key == last for j in service.core.seen))
    assert [j.text for j in service.core.seen if j.key != last] == expected


STARS = [f"/rate 494 {n}" for n in range(1, 6)]


def bot_message(world: TelegramWorld, chat_id: int, buttons: list[str] | None) -> int:
    """A message of the bot's in `chat_id`, with one inline button per data (or none)."""
    chat = world.private_chat(chat_id) if chat_id > 0 else world.chat(chat_id)
    rows = [[{"text": d, "callback_data": d} for d in buttons]] if buttons else None
    message = TgMessage(
        chat.id,
        world.next_message_id(chat),
        world.now(),
        "Choose a rating:",
        world.bot.id,
        reply_markup={"inline_keyboard": rows} if rows else None,
    )
    return world.store(message).message_id


@pytest.mark.parametrize(
    ("chat_id", "data", "buttons", "expected"),
    [
        (GROUP, "/rate 494 5", STARS, ["/rate 494 5"]),
        # Forged presses (a modified client sends any data on any of the bot's messages):
        # data no button of the message carries (another session, a rating of 9, a comment),
        # or on a message with no keyboard (a reply, a feed line: it would be edited). The
        # presser is told the button does not work; nothing is run.
        (GROUP, "/rate 999 5", STARS, [REFUSED]),
        (GROUP, "/rate 494 9", STARS, [REFUSED]),
        (GROUP, "/rate 494 5 [b]x[/b]", STARS, [REFUSED]),
        (GROUP, "/rate 494 5", None, [REFUSED]),
        # The private chat's rules, as for a typed command there: no rating.
        (LINKED, "/rate 494 5", ["/rate 494 5"], [REFUSED]),
        (LINKED, "/help", ["/help"], ["/help"]),
        (GROUP, "not a command", ["not a command"], []),
        (FORUM, "/rate 494 5", STARS, []),  # a chat not allowed: a log line only
    ],
)
async def test_which_button_presses_become_commands(
    start: Start,
    telegram_world: TelegramWorld,
    chat_id: int,
    data: str,
    buttons: list[str] | None,
    expected: list[str],
) -> None:
    service = await start()
    message_id = bot_message(telegram_world, chat_id, buttons)
    telegram_world.press(LINKED, chat_id, message_id, data, forged=True)
    marker = telegram_world.type(LINKED, GROUP, "/help")  # handled after the press
    assert marker is not None
    last = f"tg:{marker['update_id']}:0"
    await eventually(lambda: any(j.key == last for j in service.core.seen))
    assert [j.notice or j.text for j in service.core.seen if j.key != last] == expected


async def test_a_refused_press_is_answered_to_the_presser_alone_and_edits_nothing(
    start: Start, telegram_world: TelegramWorld
) -> None:
    await start()
    message_id = bot_message(telegram_world, GROUP, STARS)
    prompt = telegram_world.message(GROUP, message_id)
    assert prompt is not None
    press = telegram_world.press(LINKED, GROUP, message_id, "/rate 999 1", forged=True)
    assert press is not None
    query = telegram_world.callback_queries[press["callback_query"]["id"]]
    answer = await eventually(lambda: query["answer"])
    assert answer == {"text": "Notice: button_not_offered", "show_alert": True}
    assert (prompt.edit_date, len(from_bot(telegram_world, GROUP))) == (None, 1)


async def test_a_command_carries_the_telegram_identity_and_the_link(
    start: Start, telegram_world: TelegramWorld
) -> None:
    service = await start()
    update = telegram_world.type(LINKED, GROUP, "/rate 494 5 Молодец")
    telegram_world.type(STRANGER, GROUP, "/rate 494 4")
    await eventually(lambda: len(service.core.seen) == 2)
    mine, theirs = service.core.seen
    assert update is not None
    assert mine.key == f"tg:{update['update_id']}:0"
    assert (mine.source, mine.author_id, mine.b24_user_id, mine.language) == (
        "telegram",
        LINKED,
        27,
        "ru",
    )
    assert mine.route == TelegramRoute(chat_id=GROUP, message_id=update["message"]["message_id"])
    assert (theirs.author_id, theirs.b24_user_id, theirs.language) == (STRANGER, None, "en")


async def test_a_link_made_with_a_code_is_found_when_the_update_arrives(
    start: Start, telegram_world: TelegramWorld
) -> None:
    service = await start()
    links = StoredLinks(service.app[CORE].storage, key=link_key("k"), static={})
    await links.redeem(STRANGER, await links.issue(27))
    telegram_world.type(STRANGER, GROUP, "/rate 494 5")
    (job,) = await eventually(lambda: service.core.seen)
    assert (job.author_id, job.b24_user_id) == (STRANGER, 27)


async def test_the_answer_replies_to_the_command_as_plain_text(
    start: Start, telegram_world: TelegramWorld
) -> None:
    await start()
    update = telegram_world.type(LINKED, GROUP, "/rate 494 5 Молодец")
    assert update is not None
    (sent,) = await eventually(lambda: from_bot(telegram_world, GROUP))
    assert sent.reply_to == update["message"]["message_id"]
    assert sent.text == "✅ Saved. 494: 5 Молодец"
    assert (sent.parse_mode, sent.entities) == (None, [])


@pytest.mark.parametrize(
    ("chat_id", "text", "told"),
    [
        (CHANNEL, "/rate 494 5", True),
        (CHANNEL, "/rate@OtherBot 494 5", False),  # not ours
        (CHANNEL, "news of the shift", False),
        (UNLISTED_CHANNEL, "/rate 494 5", False),  # not allowed: a log line only
    ],
)
async def test_a_channel_post_is_told_a_group_is_needed(
    start: Start, telegram_world: TelegramWorld, chat_id: int, text: str, told: bool
) -> None:
    telegram_world.add_chat(
        TgChat(UNLISTED_CHANNEL, "channel", "Другой", members={5003}, bot_status="administrator")
    )
    service = await start()
    post = telegram_world.post_in_channel(chat_id, text)
    marker = telegram_world.type(LINKED, GROUP, "/help")  # handled after the post
    assert post is not None
    assert marker is not None
    last = f"tg:{marker['update_id']}:0"
    await eventually(lambda: any(j.key == last for j in service.core.seen))
    notices = [j for j in service.core.seen if j.key != last]
    # The notice is a job like any answer: keyed by the update, sent by the workers. A post
    # has no sender language: "/rate 494 5" reads as English.
    assert [(j.key, j.notice, j.language) for j in notices] == (
        [(f"tg:{post['update_id']}:0", NoAuthor(), "en")] if told else []
    )
    if told:
        # In a channel the bot posts as the channel: every message there after the post is its.
        after = await eventually(
            lambda: [m for (chat, _), m in telegram_world.messages.items() if chat == chat_id][1:]
        )
        assert [(m.text, m.reply_to) for m in after] == [
            ("Notice: no_author", post["channel_post"]["message_id"])
        ]


@pytest.mark.parametrize("caption", [False, True])  # a text, or a screenshot's caption
async def test_a_member_posting_as_the_group_is_told_a_group_is_needed(
    start: Start, telegram_world: TelegramWorld, caption: bool
) -> None:
    service = await start(TELEGRAM_ALLOWED_CHAT_IDS=f"{GROUP},{FORUM}")
    # An anonymous administrator.
    post = telegram_world.type(5003, FORUM, "/rate 494 5", as_chat=True, caption=caption)
    assert post is not None
    (job,) = await eventually(lambda: service.core.seen)
    assert (job.key, job.notice, job.author_id) == (f"tg:{post['update_id']}:0", NoAuthor(), FORUM)
    (notice,) = await eventually(lambda: from_bot(telegram_world, FORUM))
    assert notice.text == "Notice: no_author"


async def test_updates_sent_while_the_service_was_down_are_all_handled_after_a_restart(
    start: Start, telegram_world: TelegramWorld
) -> None:
    first = await start()
    telegram_world.type(LINKED, GROUP, "/rate 1 5")
    await eventually(lambda: len(first.core.seen) == 1)
    await first.stop()
    pending = [telegram_world.type(LINKED, GROUP, f"/rate {n} 4") for n in range(2, 6)]
    assert len(telegram_world.updates) == len(pending)  # nobody took them meanwhile
    second = await start()
    await eventually(lambda: len(second.core.seen) == len(pending))
    assert sorted(j.key for j in second.core.seen) == [
        f"tg:{u['update_id']}:0" for u in pending if u is not None
    ]


async def test_a_second_poller_is_reported_and_polling_goes_on_after_it(
    start: Start, telegram_world: TelegramWorld
) -> None:
    telegram_world.faults.append(
        TgFault(
            "getUpdates",
            times=3,
            status=409,
            description="Conflict: terminated by other getUpdates request",
        )
    )
    service = await start()
    side = service.app[TELEGRAM]
    status = await eventually(lambda: side.status() if side.state == "conflict" else None)
    assert status["detail"] == "another poller uses this bot token"
    telegram_world.type(LINKED, GROUP, "/rate 494 5")
    await eventually(lambda: service.core.seen, within=10)
    await eventually(lambda: side.status()["state"] == "polling", within=10)
    assert telegram_world.faults == []


async def test_an_update_the_storage_cannot_take_is_not_confirmed_until_it_is_stored(
    start: Start, telegram_world: TelegramWorld
) -> None:
    service = await start()
    await eventually(lambda: service.app[TELEGRAM].status()["state"] == "polling")
    url = service.app[SETTINGS].bot_database_url
    with write_locked(url):
        update = telegram_world.type(LINKED, GROUP, "/rate 494 5")
        # Past the storage's busy timeout (5 s): the enqueue fails, and is tried again.
        await asyncio.sleep(6.5)
        assert update in telegram_world.updates  # still pending: its offset not confirmed
        assert service.core.seen == []
    job = await eventually(lambda: service.core.seen, within=30)
    assert update is not None
    assert job[0].key == f"tg:{update['update_id']}:0"
