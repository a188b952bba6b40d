"""`/link`, `/start <code>`, `/unlink`: linking a Telegram account to a Bitrix24 user.

Bitrix24 issues codes (its user is known there); Telegram redeems them. Both happen in the
author's private chat with the bot only: a code shown in a shared chat could be used by anyone
there (bot/links.py).
"""

from __future__ import annotations

from bot.commands import LinkCommand, UnlinkCommand
from bot.models import IncomingCommand, Reply
from bot.ports import Links
from bot.texts import Lang, render


async def link(
    command: LinkCommand, incoming: IncomingCommand, links: Links, bot_username: str | None
) -> Reply:
    """Issue a code (Bitrix24) or redeem one (Telegram); raises the Link* errors."""
    lang = incoming.language
    if incoming.source == "bitrix" and command.start:
        return Reply(text=render("welcome", lang))  # Bitrix24's `/start <anything>`, as before
    if not incoming.in_private_chat():
        return await _in_shared_chat(command, links, lang)
    if incoming.source == "bitrix":
        code = await links.issue(incoming.author_id)
        if bot_username is None:
            return Reply(text=render("link.code_no_bot", lang, code=code), secret=True)
        url = f"https://t.me/{bot_username}?start={code}"
        return Reply(text=render("link.code", lang, code=code, url=url), secret=True)
    if command.code is None:
        return Reply(text=render("link.how_to", lang))
    b24_user_id = await links.redeem(incoming.author_id, command.code)
    return Reply(text=render("link.linked", lang, user_id=b24_user_id))


async def _in_shared_chat(command: LinkCommand, links: Links, lang: Lang) -> Reply:
    """Linking is private; a code written here has been seen by everyone in the chat, so
    nobody may use it any more."""
    if command.code is None:
        return Reply(text=render("link.private_only", lang))
    await links.void(command.code)
    return Reply(text=render("link.code_voided", lang))


async def unlink(_: UnlinkCommand, incoming: IncomingCommand, links: Links) -> Reply:
    """Undo the link of the side it is written on."""
    if incoming.source == "bitrix":
        done = await links.unlink_bitrix(incoming.author_id)
    else:
        done = await links.unlink_telegram(incoming.author_id)
    return Reply(
        text=render("link.unlinked" if done else "link.nothing_to_unlink", incoming.language)
    )
