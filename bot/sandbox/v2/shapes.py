"""Chatbots 2.0 objects as the docs give them (`chat-bots-v2/entities.md`, `events/events.md`).

JSON-typed and camelCase: what `imbot.v2.*` answers and what `Event.get` returns. The webhook
mode posts the same data form-encoded, every scalar a string (`webhook_form`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from bot.sandbox.portal import Bot, Chat, Message, Portal, User

# Bot types: v2 name <-> the sandbox's v1 letter (imbot.register TYPE). [UNCONFIRMED: the
# letters of `personal` and `network`.]
BOT_TYPES: Final = {
    "bot": "B",
    "openline": "O",
    "supervisor": "S",
    "personal": "P",
    "network": "N",
}
_TYPE_NAMES: Final = {letter: name for name, letter in BOT_TYPES.items()}
# Chat `type` by the sandbox's chat letter. [UNCONFIRMED: entities.md lists chat, open,
# channel, openChannel, ...; the names of a private and an open-line chat are not given.]
_CHAT_TYPES: Final = {"P": "private", "C": "chat", "O": "open", "L": "lines"}


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def bot_object(portal: Portal, bot: Bot) -> dict[str, Any]:
    """The extended (owner's) Bot object, as `Bot.get` and fetched events carry it."""
    return {
        "id": bot.id,
        "code": bot.code,
        "type": _TYPE_NAMES.get(bot.type, "bot"),
        "isHidden": False,
        "isSupportOpenline": bot.openline,
        "isReactionsEnabled": True,
        "backgroundId": None,
        "language": portal.language,
        "moduleId": "rest",
        "appId": bot.app_id,
        "eventMode": bot.event_mode or "webhook",
        "countMessage": sum(1 for m in portal.messages.values() if m.author_id == bot.id),
        "countCommand": sum(1 for c in portal.commands.values() if c.bot_id == bot.id),
        "countChat": sum(1 for c in portal.chats.values() if bot.id in c.members),
        "countUser": 0,
    }


def bot_user(bot: Bot) -> dict[str, Any]:
    first, _, last = bot.name.partition(" ")
    return {
        "id": bot.id,
        "active": True,
        "name": bot.name,
        "firstName": first,
        "lastName": last,
        "bot": True,
        "type": "bot",
    }


def event_data(
    portal: Portal, bot: Bot, chat: Chat, user: User, dialog_id: str, **extra: Any
) -> dict[str, Any]:
    """The `data` of a fetched ONIMBOTV2* event about `chat` and `user` (events.md): the full
    bot object and no `auth` anywhere."""
    return {
        "bot": bot_object(portal, bot),
        **extra,
        "chat": chat_object(chat, dialog_id),
        "user": user_object(user),
        "language": portal.language,
    }


def user_object(user: User) -> dict[str, Any]:
    kind = "extranet" if user.extranet else "employee"
    return {
        "id": user.id,
        "active": True,
        "name": user.name,
        "firstName": user.first_name,
        "lastName": user.last_name,
        "workPosition": user.work_position,
        "color": "#df532d",
        "avatar": "",
        "gender": user.gender,
        "birthday": "",
        "extranet": user.extranet,
        "bot": False,
        "connector": user.connector,
        "externalAuthId": "imconnector" if user.connector else "default",
        "status": "online",
        "idle": False,
        "lastActivityDate": False,
        "absent": False,
        "departments": [],
        "phones": False,
        "type": kind,
    }


def chat_object(chat: Chat, dialog_id: str) -> dict[str, Any]:
    """A chat as events carry it: no `role`, no `muteList` (events.md, "Chat Object")."""
    return {
        "id": chat.id,
        "dialogId": dialog_id,
        "type": _CHAT_TYPES.get(chat.type, "chat"),
        "messageType": chat.type,
        "name": chat.title,
        "owner": chat.author_id,
        "avatar": "",
        "color": "#ab7761",
        "entityType": chat.entity_type,
        "entityId": chat.entity_id,
        "entityData1": chat.entity_data_1,
        "entityData2": chat.entity_data_2,
        "entityData3": chat.entity_data_3,
    }


def message_object(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "chatId": message.chat_id,
        "authorId": 0 if message.system else message.author_id,
        "date": iso(message.posted_at),
        "text": message.text,
        "isSystem": message.system,
        "uuid": "",
        "forward": None,
        "params": {},
        "viewedByOthers": False,
    }


def webhook_form(
    portal: Portal, bot: Bot, event: str, data: dict[str, Any], handler_id: int
) -> dict[str, Any]:
    """The POST body of a webhook-mode event: the bot block `{id, code, auth}`, a top-level
    `auth`, every scalar a string (events.md, "Webhook Notification Structure")."""
    auth = {
        "domain": portal.domain,
        "client_endpoint": f"https://{portal.domain}/rest/",
        "server_endpoint": "https://oauth.bitrix.info/rest/",
        "member_id": portal.member_id,
        "application_token": bot.application_token,
    }
    # An incoming-webhook bot has no OAuth tokens to hand out [UNCONFIRMED for v2; §6.8 v1].
    block = {"id": bot.id, "code": bot.code, "auth": auth}
    form = {
        "event": event,
        "event_handler_id": handler_id,
        "data": data | {"bot": block},
        "ts": int(portal.now()),
        "auth": auth,
    }
    flat: dict[str, Any] = _strings(form)
    return flat


def _strings(value: Any) -> Any:
    """`http_build_query`'s scalars: booleans "1"/"0", null "" (events.md, "Data Types")."""
    if isinstance(value, dict):
        return {k: _strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): _strings(v) for i, v in enumerate(value)}
    if isinstance(value, bool):
        return "1" if value else "0"
    return "" if value is None else str(value)
