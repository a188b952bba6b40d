"""The Bot API methods of the fake, over a `TelegramWorld` (core.telegram.org/bots/api).

Each takes the world and the request's parameters (strings from a form, or JSON values) and
returns the `result`, or raises `ApiError` with Telegram's status and description.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from bot.sandbox.telegram.entities import ParseError, parse, trimmed, utf16_len
from bot.sandbox.telegram.world import TelegramWorld, TgChat, TgMessage

MAX_TEXT: Final = 4096
MAX_CALLBACK_DATA: Final = 64  # bytes
# The button kinds besides url and callback_data; the fake keeps them as sent.
_OTHER_BUTTONS: Final = (
    "callback_game",
    "pay",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "login_url",
    "web_app",
    "copy_text",
)
_COMMAND_NAME: Final = re.compile(r"[a-z0-9_]{1,32}")
_SECRET: Final = re.compile(r"[A-Za-z0-9_-]{1,256}")


class ApiError(Exception):
    """`{"ok": false, "error_code": status, "description": …, "parameters": …}`."""

    def __init__(
        self, status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def bad_request(reason: str) -> ApiError:
    return ApiError(400, f"Bad Request: {reason}")


Params = dict[str, Any]
Method = Callable[[TelegramWorld, Params], Awaitable[Any]]


# -- parameters -------------------------------------------------------------------------------


def _int(params: Params, name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"invalid {name} specified") from None  # [UNCONFIRMED] wording


def _json(params: Params, name: str) -> Any:
    """A JSON-serialized parameter (forms send it as a string, JSON bodies inline)."""
    value = params.get(name)
    if not isinstance(value, str):
        return value
    if not value:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise bad_request(f"can't parse {name} JSON object") from None  # [UNCONFIRMED]


def _flag(params: Params, name: str) -> bool:
    return params.get(name) in (True, "true", "True", "1", 1)


def _chat(world: TelegramWorld, params: Params) -> TgChat:
    raw = params.get("chat_id")
    if raw in (None, ""):
        raise bad_request("chat_id is empty")
    if isinstance(raw, str) and raw.startswith("@"):
        found = [c for c in world.chats.values() if c.username and f"@{c.username}" == raw]
        if found:
            return found[0]
        raise bad_request("chat not found")
    try:
        chat = world.chats.get(int(raw))
    except (TypeError, ValueError):
        raise bad_request("chat not found") from None
    if chat is None:
        raise bad_request("chat not found")
    return chat


def _may_send(chat: TgChat) -> None:
    """Telegram's 403s for a chat the bot is no longer in. [UNCONFIRMED] the supergroup's and
    channel's wordings; the group's and the private chat's are the well-known ones."""
    if chat.has_bot:
        return
    if chat.type == "private":
        raise ApiError(403, "Forbidden: bot was blocked by the user")
    if chat.type == "channel":
        raise ApiError(403, "Forbidden: bot is not a member of the channel chat")
    kind = "group" if chat.type == "group" else "supergroup"
    raise ApiError(403, f"Forbidden: bot was kicked from the {kind} chat")


def _formatted(params: Params) -> tuple[str, list[dict[str, Any]]]:
    """`text` with `parse_mode` (or explicit `entities`) as Telegram stores it."""
    raw = params.get("text")
    raw = "" if raw is None else str(raw)
    explicit = _json(params, "entities")
    if explicit:
        text, entities = raw, list(explicit)
    else:
        try:
            text, entities = parse(raw, params.get("parse_mode") or None)
        except ParseError as error:
            raise bad_request(f"can't parse entities: {error}") from None
    text, entities = trimmed(text, entities)
    if not text:
        raise bad_request("message text is empty")
    if len(text) > MAX_TEXT:  # [UNCONFIRMED] Telegram counts characters after parsing
        raise bad_request("message is too long")
    return text, entities


def _inline_keyboard(params: Params) -> dict[str, Any] | None:
    markup = _json(params, "reply_markup")
    if not markup:
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if rows is None:
        return None  # reply keyboards are not kept: a group's bot never shows them here
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request("can't parse inline keyboard button: InlineKeyboardButton expected")
    return {"inline_keyboard": [[_inline_button(b) for b in row] for row in rows if row]}


def _inline_button(button: Any) -> dict[str, Any]:
    """One InlineKeyboardButton as the Bot API server reads it (telegram-bot-api,
    `Client::get_inline_keyboard_button`): a non-empty `url` wins over anything else the
    button carries, then a non-empty `callback_data`, then the other kinds; a button with
    none of them (an empty `callback_data` counts as none) is refused."""
    if not isinstance(button, dict) or not button.get("text"):
        raise bad_request("can't parse inline keyboard button: a button needs a text")
    text, url, data = button["text"], button.get("url"), button.get("callback_data")
    if url:
        _check_button_url(str(url))
        return {"text": text, "url": str(url)}
    if data:
        if len(str(data).encode()) > MAX_CALLBACK_DATA:
            raise bad_request("BUTTON_DATA_INVALID")
        return {"text": text, "callback_data": str(data)}
    if any(kind in button for kind in _OTHER_BUTTONS):
        return dict(button)
    raise bad_request(
        "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
    )


def _check_button_url(url: str) -> None:
    """The links Telegram opens: http(s) with a host, and its own tg:// (and ton://) ones.
    [UNCONFIRMED] Telegram reads a bare `example.com` as http and normalises what it keeps;
    the fake refuses a link without a scheme and keeps the rest as sent."""
    parts = urlsplit(url)
    invalid = f"inline keyboard button URL '{url}' is invalid"
    if parts.scheme.lower() in ("tg", "ton"):
        return
    if parts.scheme.lower() not in ("http", "https", ""):
        raise bad_request(f"{invalid}: Unsupported URL protocol")
    if not parts.scheme or not parts.hostname:
        raise bad_request(f"{invalid}: Wrong HTTP URL")


# -- the bot ---------------------------------------------------------------------------------


async def get_me(world: TelegramWorld, params: Params) -> Any:
    del params
    return world.bot.as_api() | {
        "can_join_groups": True,
        "can_read_all_group_messages": not world.privacy,
        "supports_inline_queries": False,
        "can_connect_to_business": False,
        "has_main_web_app": False,
    }


async def get_chat(world: TelegramWorld, params: Params) -> Any:
    """A ChatFullInfo (Bot API, getChat), the fields aiogram requires and the chat's own. A
    group, supergroup or channel the bot is no longer in answers as a message to it would
    (`_may_send`) [UNCONFIRMED: getChat's wording]; a private chat answers even when the
    user blocked the bot [UNCONFIRMED]."""
    chat = _chat(world, params)
    if chat.type != "private":
        _may_send(chat)
    return chat.as_api() | {
        "accent_color_id": chat.id % 7,  # one of the 7 built-in colours
        "max_reaction_count": 11,
        "accepted_gift_types": {
            "unlimited_gifts": False,
            "limited_gifts": False,
            "unique_gifts": False,
            "premium_subscription": False,
            "gifts_from_channels": False,
        },
    }


# -- updates ---------------------------------------------------------------------------------


class Polls:
    """The getUpdates in flight: a newer one ends the older with 409, as Telegram does."""

    def __init__(self) -> None:
        self.current: object | None = None
        self.terminated: set[int] = set()


POLLS: Final = "polls"


def _set_allowed(world: TelegramWorld, params: Params) -> None:
    allowed = _json(params, "allowed_updates")
    if allowed is None:
        return  # "If not specified, the previous setting will be used."
    if not isinstance(allowed, list):
        raise bad_request("can't parse allowed_updates JSON array")
    world.allowed_updates = frozenset(str(a) for a in allowed) or None


def make_get_updates(polls: Polls) -> Method:
    async def get_updates(world: TelegramWorld, params: Params) -> Any:
        if world.webhook.url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        ticket = object()
        if polls.current is not None:
            polls.terminated.add(id(polls.current))
            world.notify()
        polls.current = ticket
        try:
            return await _poll(world, params, polls, ticket)
        finally:
            polls.terminated.discard(id(ticket))
            if polls.current is ticket:
                polls.current = None

    return get_updates


async def _poll(world: TelegramWorld, params: Params, polls: Polls, ticket: object) -> Any:
    offset = _int(params, "offset", 0) or 0
    limit = min(max(_int(params, "limit", 100) or 100, 1), 100)
    timeout = max(_int(params, "timeout", 0) or 0, 0)
    _set_allowed(world, params)
    if offset < 0:  # the last -offset updates; the others are forgotten
        keep = world.updates[offset:]
        world.drop_pending()
        world.updates = keep
        world.delivered = [u for u in world.delivered if u not in keep]
    elif offset:
        world.confirm_below(offset)
    loop_deadline = _deadline(timeout)
    while True:
        if id(ticket) in polls.terminated:
            raise ApiError(
                409,
                "Conflict: terminated by other getUpdates request; "
                "make sure that only one bot instance is running",
            )
        if world.updates or world.closed:
            return world.updates[:limit]
        left = loop_deadline - _now()
        if left <= 0:
            return []
        world.polls_waiting += 1
        try:
            await world.changed(left)
        finally:
            world.polls_waiting -= 1


def _now() -> float:
    return asyncio.get_running_loop().time()


def _deadline(timeout: int) -> float:
    return _now() + timeout


async def set_webhook(world: TelegramWorld, params: Params) -> Any:
    url = str(params.get("url") or "")
    secret = str(params.get("secret_token") or "")
    if secret and not _SECRET.fullmatch(secret):
        raise bad_request("secret token contains unallowed characters")  # [UNCONFIRMED]
    if url and not url.startswith(("https://", "http://")):
        raise bad_request("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
    # Telegram wants https on ports 443, 80, 88 or 8443; the fake takes loopback http too.
    _set_allowed(world, params)
    if _flag(params, "drop_pending_updates"):
        world.drop_pending()
    world.webhook.url, world.webhook.secret_token = url, secret
    world.webhook.max_connections = _int(params, "max_connections", 40) or 40
    world.webhook.last_error_date = world.webhook.last_error_message = None
    world.notify()
    return True


async def delete_webhook(world: TelegramWorld, params: Params) -> Any:
    if _flag(params, "drop_pending_updates"):
        world.drop_pending()
    world.webhook.url = world.webhook.secret_token = ""
    world.notify()
    return True


async def get_webhook_info(world: TelegramWorld, params: Params) -> Any:
    del params
    hook = world.webhook
    info: dict[str, Any] = {
        "url": hook.url,
        "has_custom_certificate": False,
        "pending_update_count": len(world.updates),
    }
    if hook.url:
        info["max_connections"] = hook.max_connections
        if world.allowed_updates is not None:
            info["allowed_updates"] = sorted(world.allowed_updates)
        if hook.last_error_date is not None:
            info["last_error_date"] = hook.last_error_date
            info["last_error_message"] = hook.last_error_message
    return info


# -- messages --------------------------------------------------------------------------------


def _reply_target(world: TelegramWorld, chat: TgChat, params: Params) -> int | None:
    reply = _json(params, "reply_parameters") or {}
    if not isinstance(reply, dict):
        raise bad_request("can't parse reply parameters JSON object")
    message_id = reply.get("message_id") or _int(params, "reply_to_message_id")
    if not message_id:
        return None
    if world.message(chat.id, int(message_id)) is None:
        if reply.get("allow_sending_without_reply") or _flag(
            params, "allow_sending_without_reply"
        ):
            return None
        raise bad_request("message to be replied not found")
    return int(message_id)


async def send_message(world: TelegramWorld, params: Params) -> Any:
    chat = _chat(world, params)
    _may_send(chat)
    thread_id = _int(params, "message_thread_id")
    if thread_id is not None and thread_id not in chat.topics:
        raise bad_request("message thread not found")
    text, entities = _formatted(params)
    message = TgMessage(
        chat.id,
        world.next_message_id(chat),
        world.now(),
        text,
        None if chat.type == "channel" else world.bot.id,
        entities=entities,
        reply_markup=_inline_keyboard(params),
        reply_to=_reply_target(world, chat, params),
        thread_id=thread_id,
        link_preview_options=_json(params, "link_preview_options") or None,
        parse_mode=params.get("parse_mode") or None,
    )
    return world.message_as_api(world.store(message))


async def edit_message_text(world: TelegramWorld, params: Params) -> Any:
    if params.get("inline_message_id"):
        raise bad_request("MESSAGE_ID_INVALID")  # inline mode is not modelled
    chat = _chat(world, params)
    _may_send(chat)
    message_id = _int(params, "message_id")
    if message_id is None:
        raise bad_request("message identifier is not specified")
    message = world.message(chat.id, message_id)
    if message is None:
        raise bad_request("message to edit not found")
    if message.sender_id not in (world.bot.id, None) or (
        message.sender_id is None and chat.type != "channel"
    ):
        raise bad_request("message can't be edited")
    text, entities = _formatted(params)
    markup = _inline_keyboard(params)  # absent: the inline keyboard is removed
    if (text, entities, markup) == (message.text, message.entities, message.reply_markup):
        raise bad_request(
            "message is not modified: specified new message content and reply markup are "
            "exactly the same as a current content and reply markup of the message"
        )
    message.text, message.entities, message.reply_markup = text, entities, markup
    message.edit_date = world.now()
    message.parse_mode = params.get("parse_mode") or None
    return world.message_as_api(message)


async def answer_callback_query(world: TelegramWorld, params: Params) -> Any:
    query = world.callback_queries.get(str(params.get("callback_query_id") or ""))
    if query is None or query["answer"] is not None:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    text = str(params.get("text") or "")
    if len(text) > 200:  # noqa: PLR2004 - the Bot API's 0-200 characters
        raise bad_request("MESSAGE_TOO_LONG")  # [UNCONFIRMED] wording
    query["answer"] = {"text": text, "show_alert": _flag(params, "show_alert")}
    return True


# -- commands --------------------------------------------------------------------------------


def _scope_key(params: Params) -> str:
    scope = _json(params, "scope") or {"type": "default"}
    if not isinstance(scope, dict) or "type" not in scope:
        raise bad_request("can't parse BotCommandScope JSON object")
    parts = [str(scope["type"])]
    parts += [f"{k}={scope[k]}" for k in ("chat_id", "user_id") if k in scope]
    return " ".join(parts)


def _language(params: Params) -> str:
    language = str(params.get("language_code") or "")
    if language and not re.fullmatch(r"[a-z]{2}", language):
        raise bad_request("invalid language code specified")  # [UNCONFIRMED] wording
    return language


async def set_my_commands(world: TelegramWorld, params: Params) -> Any:
    commands = _json(params, "commands")
    if not isinstance(commands, list):
        raise bad_request("can't parse commands JSON array")
    for command in commands:
        if not isinstance(command, dict) or not _COMMAND_NAME.fullmatch(
            str(command.get("command", ""))
        ):
            raise bad_request("BOT_COMMAND_INVALID")
        if not 1 <= utf16_len(str(command.get("description", ""))) <= 256:  # noqa: PLR2004
            raise bad_request("command description is empty or too long")  # [UNCONFIRMED]
    key = (_scope_key(params), _language(params))
    world.commands[key] = [
        {"command": c["command"], "description": c["description"]} for c in commands
    ]
    return True


async def get_my_commands(world: TelegramWorld, params: Params) -> Any:
    return world.commands.get((_scope_key(params), _language(params)), [])


async def delete_my_commands(world: TelegramWorld, params: Params) -> Any:
    world.commands.pop((_scope_key(params), _language(params)), None)
    return True


def methods(polls: Polls) -> Mapping[str, Method]:
    """Lower-case method name -> implementation (Telegram's names are case-insensitive)."""
    table: dict[str, Method] = {
        "getMe": get_me,
        "getChat": get_chat,
        "getUpdates": make_get_updates(polls),
        "setWebhook": set_webhook,
        "deleteWebhook": delete_webhook,
        "getWebhookInfo": get_webhook_info,
        "sendMessage": send_message,
        "editMessageText": edit_message_text,
        "answerCallbackQuery": answer_callback_query,
        "setMyCommands": set_my_commands,
        "getMyCommands": get_my_commands,
        "deleteMyCommands": delete_my_commands,
    }
    return {name.lower(): impl for name, impl in table.items()}
