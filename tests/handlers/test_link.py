"""`/link`, `/start <code>` and `/unlink` (handlers/link.py) through the real dispatch: a code
asked for in Bitrix24 links the Telegram account that sends it back, privately only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.bitrix.client import BitrixClient
from bot.dispatch import run_command
from bot.links import StoredLinks
from bot.models import BitrixRoute, IncomingCommand
from bot.storage import Storage
from bot.texts import render
from tests.linked import BOT_USERNAME, CODE, from_bitrix, from_telegram, linked_storage, services


@pytest.fixture
async def linking(tmp_path: Path) -> AsyncIterator[tuple[Storage, StoredLinks]]:
    storage, links = await linked_storage(tmp_path)
    yield storage, links
    await storage.close()


async def ask_code(
    make_client: Callable[..., BitrixClient], links: StoredLinks, username: str | None
) -> str:
    handled = await run_command(
        from_bitrix("/link"), services(make_client, links, telegram_username=username)
    )
    assert handled.outcome == "link_code"
    match = CODE.search(handled.reply.text)
    assert match is not None, handled.reply.text
    return match.group(1)


@pytest.mark.parametrize("redeem", ["/start {code}", "/link {code}", "/link {lower}"])
async def test_a_code_from_bitrix24_links_the_telegram_account_that_sends_it(
    make_client: Callable[..., BitrixClient],
    linking: tuple[Storage, StoredLinks],
    redeem: str,
) -> None:
    _, links = linking
    code = await ask_code(make_client, links, BOT_USERNAME)
    text = redeem.format(code=code, lower=code.lower())
    handled = await run_command(from_telegram(text, chat_id=5001), services(make_client, links))
    assert handled.reply.text == render("link.linked", "en", user_id=27)
    assert await links.linked(5001) == 27


@pytest.mark.parametrize(
    ("username", "shows"),
    [
        (BOT_USERNAME, f"https://t.me/{BOT_USERNAME}?start="),  # the deep link
        (None, "/link "),  # the username unknown: the code alone, and what to send
    ],
)
async def test_link_in_bitrix24_answers_a_code_and_a_deep_link_when_the_bot_is_known(
    make_client: Callable[..., BitrixClient],
    linking: tuple[Storage, StoredLinks],
    username: str | None,
    shows: str,
) -> None:
    _, links = linking
    handled = await run_command(
        from_bitrix("/link"), services(make_client, links, telegram_username=username)
    )
    code = CODE.search(handled.reply.text)
    assert code is not None
    assert shows + code.group(1) in handled.reply.text


@pytest.mark.parametrize(
    ("incoming", "key"),
    [
        # A code in a shared chat could be used by anyone there: neither side does it.
        (from_bitrix("/link", dialog_id="chat2001"), "link.private_only"),
        (from_telegram("/start ABCDEFGHJK"), "link.code_voided"),  # and the code voided
        (from_telegram("/link"), "link.private_only"),
        (from_telegram("/link", chat_id=5001), "link.how_to"),
        (from_telegram("/link ZZZZZZZZZZ", chat_id=5001), "link.code_invalid"),
        (from_telegram("/link [b]x[/b]", chat_id=5001), "link.code_invalid"),
        (from_telegram("/unlink", chat_id=5001), "link.nothing_to_unlink"),
        (from_telegram("/unlink", tg_user=7007, chat_id=7007), "link.static"),
        (from_bitrix("/start ABCDEFGHJK"), "welcome"),  # Bitrix24's `/start`, as before
    ],
)
async def test_linking_answers(
    make_client: Callable[..., BitrixClient],
    linking: tuple[Storage, StoredLinks],
    incoming: IncomingCommand,
    key: str,
) -> None:
    _, links = linking
    handled = await run_command(incoming, services(make_client, links))
    assert handled.reply.text == render(key, "en")
    assert await links.linked(5001) is None


@pytest.mark.parametrize(
    "unlink", [from_bitrix("/unlink"), from_telegram("/unlink", chat_id=5001)]
)
async def test_unlink_on_either_side_undoes_the_link(
    make_client: Callable[..., BitrixClient],
    linking: tuple[Storage, StoredLinks],
    unlink: IncomingCommand,
) -> None:
    _, links = linking
    await links.redeem(5001, await links.issue(27))
    handled = await run_command(unlink, services(make_client, links))
    assert (handled.reply.text, handled.outcome) == (render("link.unlinked", "en"), "unlinked")
    assert await links.linked(5001) is None


async def test_link_in_an_open_line_chat_says_nothing_the_customer_could_read(
    make_client: Callable[..., BitrixClient], linking: tuple[Storage, StoredLinks]
) -> None:
    _, links = linking
    route = BitrixRoute(dialog_id="chat1157", author_dialog_id="27", openline=True)
    incoming = from_bitrix("/link").model_copy(update={"route": route})
    handled = await run_command(incoming, services(make_client, links))
    assert handled.reply.text == ""


@pytest.mark.parametrize("text", ["/link", "/unlink"])
async def test_without_telegram_link_commands_are_unknown(
    make_client: Callable[..., BitrixClient], text: str
) -> None:
    handled = await run_command(from_bitrix(text), services(make_client, None))
    assert handled.reply.text == render("parse.unknown_command", "en", command=text)


async def test_unlink_in_bitrix24_leaves_a_static_link_to_the_administrator(
    make_client: Callable[..., BitrixClient], linking: tuple[Storage, StoredLinks]
) -> None:
    _, links = linking
    handled = await run_command(from_bitrix("/unlink", user=28), services(make_client, links))
    assert handled.reply.text == render("link.static", "en")
    assert await links.linked(7007) == 28


async def test_a_code_written_in_a_group_is_voided_so_nobody_who_saw_it_can_use_it(
    make_client: Callable[..., BitrixClient], linking: tuple[Storage, StoredLinks]
) -> None:
    _, links = linking
    code = await ask_code(make_client, links, BOT_USERNAME)
    shown = await run_command(from_telegram(f"/start {code}"), services(make_client, links))
    assert shown.reply.text == render("link.code_voided", "en")
    # Another member of the group, who saw the code, sends it to the bot privately.
    stolen = await run_command(
        from_telegram(f"/link {code}", tg_user=6006, chat_id=6006), services(make_client, links)
    )
    assert stolen.reply.text == render("link.code_invalid", "en")
    assert await links.linked(6006) is None
