"""ONIMBOTV2* events as Bitrix24 builds them (`imbot.v2/events/events.md`), as plain data.

`bot.sandbox.events.EventSender` decides who hears what and delivers each `(bot, type, data)`
to the bot's queue (fetch mode) or its webhook URL (webhook mode). Unlike v1, a message with
the same command on three lines is three ONIMBOTV2COMMANDADD events, one per occurrence
("If a single message contains multiple slash commands, an event is generated separately for
each command"; protocol notes §00 item 9).
"""

from __future__ import annotations

from typing import Any

from bot.sandbox.portal import Bot, BotCommand, Chat, Message, Portal, User
from bot.sandbox.v2.shapes import bot_object, event_data, message_object

V2Event = tuple[Bot, str, dict[str, Any]]


def dialog_of(chat: Chat, user: User) -> str:
    """The dialog as the bot sees it: the user's id in a private chat, `chat<ID>` otherwise."""
    return str(user.id) if chat.type == "P" else chat.dialog_id


def command_events(
    portal: Portal,
    message: Message,
    author: User,
    chat: Chat,
    matched: list[tuple[BotCommand, str]],
    *,
    context: str = "textarea",
) -> list[V2Event]:
    """One ONIMBOTV2COMMANDADD per (command, params) occurrence; each grants the bot its
    answer window for (command, message), as in v1 (§0 item 13)."""
    events = []
    for command, params in matched:
        bot = portal.bots[command.bot_id]
        portal.answer_grants[(command.id, message.id)] = portal.now()
        block = {
            "id": command.id,
            "command": f"/{command.command}",
            "params": params,
            "context": context,
        }
        data = event_data(
            portal,
            bot,
            chat,
            author,
            dialog_of(chat, author),
            command=block,
            message=message_object(message),
        )
        events.append((bot, "ONIMBOTV2COMMANDADD", data))
    return events


def message_event(portal: Portal, bot: Bot, message: Message, author: User, chat: Chat) -> V2Event:
    data = event_data(
        portal, bot, chat, author, dialog_of(chat, author), message=message_object(message)
    )
    return bot, "ONIMBOTV2MESSAGEADD", data


def join_event(portal: Portal, bot: Bot, user: User, chat: Chat) -> V2Event:
    dialog_id = dialog_of(chat, user)
    return (
        bot,
        "ONIMBOTV2JOINCHAT",
        event_data(portal, bot, chat, user, dialog_id, dialogId=dialog_id),
    )


def delete_event(portal: Portal, bot: Bot) -> V2Event:
    return bot, "ONIMBOTV2DELETE", {"bot": bot_object(portal, bot)}
