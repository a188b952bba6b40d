"""The fake Telegram as the chat page shows it: the groups with the bot, their messages and
inline keyboards, and which Telegram account each of the portal's people has."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from bot.sandbox.telegram.seed import PORTAL_USERS
from bot.sandbox.telegram.world import TelegramWorld, TgMessage
from bot.sandbox.web.bounds import cut, newest_per_chat


def telegram_mark(world: TelegramWorld) -> Hashable:
    """Changes with every message and every Bot API call (edits are calls)."""
    return (len(world.messages), len(world.calls))


def telegram_snapshot(world: TelegramWorld) -> dict[str, Any]:
    groups = [c for c in world.chats.values() if c.type in ("group", "supergroup") and c.has_bot]
    shown = {c.id for c in groups}
    return {
        "bot": {"id": world.bot.id, "name": world.bot.first_name, "username": world.bot.username},
        "accounts": {str(user): tg for tg, user in PORTAL_USERS.items() if tg in world.users},
        "chats": [
            {"id": c.id, "title": c.title, "type": c.type, "members": sorted(c.members)}
            for c in groups
        ],
        "messages": [
            _message(world, m)
            for m in newest_per_chat(m for m in world.messages.values() if m.chat_id in shown)
        ],
    }


def _message(world: TelegramWorld, message: TgMessage) -> dict[str, Any]:
    sender = world.users.get(message.sender_id) if message.sender_id is not None else None
    author = " ".join(filter(None, (sender.first_name, sender.last_name))) if sender else ""
    keyboard = (message.reply_markup or {}).get("inline_keyboard", [])
    return {
        "chat_id": message.chat_id,
        "message_id": message.message_id,
        "sender_id": message.sender_id,
        "author": author or "(the group)",
        "text": cut(message.text),  # as Telegram stores it: markup parsed away, shown as text
        "edited": message.edit_date is not None,
        "buttons": [[_button(b) for b in row] for row in keyboard if isinstance(row, list)],
    }


def _button(button: dict[str, Any]) -> dict[str, Any]:
    """A callback button's `data`, or a url button's `url` (http(s), or Telegram's own tg://
    which the page shows but does not open)."""
    url = button.get("url")
    return {
        "text": str(button.get("text", "")),
        "data": str(button.get("callback_data", "")),
        "url": str(url) if url else None,
    }
