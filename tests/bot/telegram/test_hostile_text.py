"""Text as data wherever Telegram shows it, attacked end to end (the service against the sandbox
portal and the fake Bot API, both over HTTP): comments and names with bidi controls, markup and
line breaks, and invisible characters inside the command itself."""

from __future__ import annotations

import re

import pytest
from aiohttp.test_utils import TestServer

from bot.jobs import NOT_KEPT_IN_AUDIT
from bot.sandbox.telegram.seed import FEED, SUPERVISORS_GROUP
from bot.sandbox.telegram.world import TelegramWorld
from bot.state import CORE
from bot.texts import render
from tests.bot.telegram.test_end_to_end import STRANGER, SVETLANA, start_both
from tests.harness import ServiceFactory, eventually

BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
# Reads, with the override, as the bot saying session 495 got one star.
SPOOF = "\u202e)1( ☆☆☆☆★ — 594 яиссеС\u202c"
FAKE_LINE = "Пользователь Битрикс24 28 (Telegram): сессия 495 — ★☆☆☆☆ (1), без комментария"


@pytest.mark.parametrize(
    "comment",
    [
        SPOOF,
        f"Хорошо\n{FAKE_LINE}",
        f"Хорошо\u2028{FAKE_LINE}\u2067",
        "\u2066<b>[b]жирно[/b]</b>\r\n\u2069&amp; <a href='x'>ссылка</a>",
    ],
)
async def test_a_comment_can_neither_flip_the_bots_words_nor_add_a_feed_line(
    start_service: ServiceFactory,
    sandbox: TestServer,
    telegram_world: TelegramWorld,
    comment: str,
) -> None:
    # A hostile Telegram name too: names are never shown (the feed names the Bitrix24 user).
    me = telegram_world.user(SVETLANA)
    me.first_name, me.username = "\u202e<b>[b]Админ[/b]</b>\n" + "Я" * 60, "x\u200bbot"
    service = await start_both(
        start_service, sandbox, "polling", TELEGRAM_USER_MAP=f"{SVETLANA}:27"
    )
    telegram_world.type(SVETLANA, SUPERVISORS_GROUP, f"/rate 494 5 {comment}")
    (answer,) = await eventually(
        lambda: telegram_world.messages_from_bot(SUPERVISORS_GROUP), within=10
    )
    (line,) = await eventually(lambda: telegram_world.messages_from_bot(FEED), within=10)
    assert service.portal.sessions[494].comment_head == comment  # stored exactly as typed
    assert (BIDI_CONTROLS.search(answer), BIDI_CONTROLS.search(line)) == (None, None)
    assert "\n" not in line
    assert "\u2028" not in line
    assert line.startswith("Пользователь Битрикс24 27 (Telegram): сессия 494 — ★★★★★")
    assert "Админ" not in line + answer


@pytest.mark.parametrize(
    ("chat_id", "text", "codes"),
    [
        (SUPERVISORS_GROUP, "/rate 494 \u20665", "U+2066"),  # reads /rate 494 5
        (SUPERVISORS_GROUP, "/rate 494 \u2066 5", "U+2066"),
        (SUPERVISORS_GROUP, "/ra\u200bte 494 5", "U+200B"),
        (SUPERVISORS_GROUP, "/rate\u2066 494 5", "U+2066"),
        (SUPERVISORS_GROUP, "/rate \u202e494 5\u202c", "U+202E"),  # reads /rate 5 494
        (SVETLANA, "/li\u200bnk ABCDE12345", "U+200B"),  # the private chat answers too
    ],
)
async def test_invisible_characters_in_a_command_are_a_clear_error_never_a_wrong_vote(
    start_service: ServiceFactory,
    sandbox: TestServer,
    telegram_world: TelegramWorld,
    chat_id: int,
    text: str,
    codes: str,
) -> None:
    service = await start_both(
        start_service, sandbox, "polling", TELEGRAM_USER_MAP=f"{SVETLANA}:27"
    )
    before = service.portal.sessions[494]
    stored = (before.vote_head, before.comment_head)
    telegram_world.type(SVETLANA, chat_id, text)
    (answer,) = await eventually(lambda: telegram_world.messages_from_bot(chat_id), within=10)
    assert codes in answer
    assert "Ничего не сохранено" in answer
    after = service.portal.sessions[494]
    assert (after.vote_head, after.comment_head) == stored
    assert telegram_world.messages_from_bot(FEED) == []


@pytest.mark.parametrize(
    "text",
    [
        "/start " + "A" * 4000,
        "/link " + "Z9" * 2000,
        "/start ÄÖÜ😀\u202eЖ<b>[b]$result[0]",
        "/start 0000000000" + "\u200b" * 100,
        "/link \u2066ABCDEFGHJK",
    ],
)
async def test_a_junk_huge_or_unicode_code_is_refused_in_one_line_and_kept_nowhere(
    start_service: ServiceFactory, sandbox: TestServer, telegram_world: TelegramWorld, text: str
) -> None:
    service = await start_both(start_service, sandbox, "polling")
    telegram_world.type(STRANGER, STRANGER, text)
    (answer,) = await eventually(lambda: telegram_world.messages_from_bot(STRANGER), within=10)
    assert answer in (render("link.code_invalid", "en"), render("link.code_invalid", "ru"))
    entries = await service.server.app[CORE].storage.audit()
    assert [e.text for e in entries] == [NOT_KEPT_IN_AUDIT]
