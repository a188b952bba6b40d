"""Polling mode: which updates become jobs, stored before their offset is confirmed."""

from __future__ import annotations

import asyncio

import pytest

from bot.links import StoredLinks, link_key
from bot.models import TelegramRoute
from bot.state import CORE, SETTINGS
from bot.telegram.side import TELEGRAM
from tests.bot.telegram.conftest import GROUP, LINKED, STRANGER, Start
from tests.bot.telegram.fakebot import FakeBotApi
from tests.harness import eventually, write_locked


async def test_polling_starts_by_deleting_the_webhook_and_naming_the_commands(
    start: Start, fake: FakeBotApi
) -> None:
    service = await start()
    await eventually(lambda: service.app[TELEGRAM].status()["state"] == "polling")
    methods = [name for name, _ in fake.calls]
    assert methods.index("deleteWebhook") < methods.index("getUpdates")
    menus = {
        (p["scope"]["type"], p.get("language_code")): [c["command"] for c in p["commands"]]
        for p in fake.sent("setMyCommands")
    }
    assert menus == {
        ("all_group_chats", None): ["rate", "help"],
        ("all_group_chats", "ru"): ["rate", "help"],
        ("all_private_chats", None): ["link", "unlink", "help"],
        ("all_private_chats", "ru"): ["link", "unlink", "help"],
    }
    assert service.app[TELEGRAM].username == "RatingBot"


@pytest.mark.parametrize(
    ("chat_id", "chat_type", "text", "expected"),
    [
        (GROUP, "supergroup", "/rate 494 5 Молодец", ["/rate 494 5 Молодец"]),
        (GROUP, "supergroup", "/rate@RatingBot 494 5", ["/rate 494 5"]),
        (GROUP, "supergroup", "/rate@ratingbot 494 5", ["/rate 494 5"]),
        (GROUP, "supergroup", "/rate@OtherBot 494 5", []),
        (GROUP, "supergroup", "just talking", []),
        (GROUP, "supergroup", "/rate 1 5\n/rate 2 4", ["/rate 1 5", "/rate 2 4"]),
        (-2002, "supergroup", "/rate 494 5", []),  # a chat not allowed: a log line only
        (LINKED, "private", "/rate 494 5", []),  # no rating in a private chat
        (LINKED, "private", "/start c0de", ["/start c0de"]),
        (LINKED, "private", "/help", ["/help"]),
    ],
)
async def test_which_messages_become_commands(
    start: Start, fake: FakeBotApi, chat_id: int, chat_type: str, text: str, expected: list[str]
) -> None:
    service = await start()
    fake.type(chat_id, LINKED, text, chat_type=chat_type)
    marker = fake.type(GROUP, LINKED, "/help")  # handled after the one above
    last = f"tg:{marker['update_id']}:0"
    await eventually(lambda: any(j.key == last for j in service.core.seen))
    assert [j.text for j in service.core.seen if j.key != last] == expected


async def test_a_command_carries_the_telegram_identity_and_the_link(
    start: Start, fake: FakeBotApi
) -> None:
    service = await start()
    update = fake.type(GROUP, LINKED, "/rate 494 5 Молодец", lang="ru")
    fake.type(GROUP, STRANGER, "/rate 494 4")
    await eventually(lambda: len(service.core.seen) == 2)
    mine, theirs = service.core.seen
    assert mine.key == f"tg:{update['update_id']}:0"
    assert (mine.source, mine.author_id, mine.b24_user_id, mine.language) == (
        "telegram",
        LINKED,
        27,
        "ru",
    )
    assert mine.route == TelegramRoute(chat_id=GROUP, message_id=update["message"]["message_id"])
    assert (theirs.author_id, theirs.b24_user_id) == (STRANGER, None)


async def test_a_link_made_with_a_code_is_found_when_the_update_arrives(
    start: Start, fake: FakeBotApi
) -> None:
    service = await start()
    links = StoredLinks(service.app[CORE].storage, key=link_key("k"), static={})
    await links.redeem(888, await links.issue(27))
    fake.type(GROUP, 888, "/rate 494 5")
    (job,) = await eventually(lambda: service.core.seen)
    assert (job.author_id, job.b24_user_id) == (888, 27)


async def test_the_answer_replies_to_the_command_as_plain_text(
    start: Start, fake: FakeBotApi
) -> None:
    await start()
    update = fake.type(GROUP, LINKED, "/rate 494 5 Молодец")
    sent = await eventually(lambda: fake.sent("sendMessage"))
    assert sent[0]["chat_id"] == str(GROUP)
    assert sent[0]["reply_parameters"]["message_id"] == update["message"]["message_id"]
    assert sent[0]["text"] == "✅ Saved. 494: 5 Молодец"
    assert "parse_mode" not in sent[0]


@pytest.mark.parametrize(
    ("chat_id", "kind", "chat_type", "sender_chat", "told"),
    [
        (GROUP, "channel_post", "channel", False, True),
        (GROUP, "message", "supergroup", True, True),  # a member posting as the group
        (-3003, "channel_post", "channel", False, False),  # not allowed: a log line only
    ],
)
async def test_a_post_without_a_person_is_told_a_group_is_needed(
    start: Start,
    fake: FakeBotApi,
    chat_id: int,
    kind: str,
    chat_type: str,
    sender_chat: bool,
    told: bool,
) -> None:
    service = await start()
    fake.type(
        chat_id, None, "/rate 494 5", kind=kind, chat_type=chat_type, sender_chat=sender_chat
    )
    marker = fake.type(GROUP, LINKED, "/help")  # handled after the post
    await eventually(lambda: service.core.seen)
    assert [job.key for job in service.core.seen] == [f"tg:{marker['update_id']}:0"]
    notices = [m for m in fake.sent("sendMessage") if "group" in m["text"]]
    assert [m["chat_id"] for m in notices] == ([str(chat_id)] if told else [])


async def test_updates_sent_while_the_service_was_down_are_all_handled_after_a_restart(
    start: Start, fake: FakeBotApi
) -> None:
    first = await start()
    fake.type(GROUP, LINKED, "/rate 1 5")
    await eventually(lambda: len(first.core.seen) == 1)
    await first.stop()
    pending = [fake.type(GROUP, LINKED, f"/rate {n} 4") for n in range(2, 6)]
    second = await start()
    await eventually(lambda: len(second.core.seen) == len(pending))
    assert sorted(j.key for j in second.core.seen) == [f"tg:{u['update_id']}:0" for u in pending]


async def test_a_second_poller_is_reported_and_polling_goes_on_after_it(
    start: Start, fake: FakeBotApi
) -> None:
    for _ in range(3):
        fake.fail("getUpdates", 409, "Conflict: terminated by other getUpdates request")
    service = await start()
    side = service.app[TELEGRAM]
    status = await eventually(lambda: side.status() if side.state == "conflict" else None)
    assert status["detail"] == "another poller uses this bot token"
    fake.type(GROUP, LINKED, "/rate 494 5")
    await eventually(lambda: service.core.seen)
    assert side.status()["state"] == "polling"


async def test_an_update_the_storage_cannot_take_is_not_confirmed_until_it_is_stored(
    start: Start, fake: FakeBotApi
) -> None:
    service = await start()
    await eventually(lambda: service.app[TELEGRAM].status()["state"] == "polling")
    url = service.app[SETTINGS].bot_database_url
    with write_locked(url):
        update = fake.type(GROUP, LINKED, "/rate 494 5")
        # Past the storage's busy timeout (5 s): the enqueue fails, and is tried again.
        await asyncio.sleep(6.5)
        assert fake.confirmed <= update["update_id"]
        assert service.core.seen == []
    job = await eventually(lambda: service.core.seen, within=30)
    assert job[0].key == f"tg:{update['update_id']}:0"
