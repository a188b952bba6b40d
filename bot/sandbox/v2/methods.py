"""imbot.v2.* methods (protocol notes §00 item 9, §1.11; `chat-bots-v2/imbot.v2/*` in the docs).

A v2 bot is the portal's `Bot` with an event mode. Through an incoming webhook every call
carries `botToken` and the caller's application is `custom<botToken>`, so a classic bot
registered with CLIENT_ID=X is the same application's bot for botToken=X (§00 item 9;
[UNCONFIRMED]: migration.md calls the v1 CLIENT_ID "a different token"). The error codes are
the docs' own; where the docs name none, the code says [UNCONFIRMED].
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

from bot.sandbox import imbot, php
from bot.sandbox.keyboard import keyboard_of
from bot.sandbox.portal import Bot, BotCommand, RestError
from bot.sandbox.rest import CallContext
from bot.sandbox.v2.queue import DEFAULT_LIMIT, MAX_LIMIT
from bot.sandbox.v2.shapes import BOT_TYPES, bot_object, bot_user

REVISION: Final = {"rest": 36, "web": 130, "mobile": 23, "desktop": 6}
MAX_TOKEN: Final = 40
MAX_BOTS: Final = 100  # per application (bot-register.md, BOT_LIMIT_EXCEEDED)
BOTS_PAGE: Final = 50  # Bot.list's default limit
MAX_MESSAGE: Final = 20_000
_CUT: Final = " (...)"  # what a longer text is truncated with (chat-message-send.md)
_MODES: Final = ("fetch", "webhook")


def _require_v2(ctx: CallContext) -> None:
    if not ctx.portal.chatbots_v2:
        raise RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)


def _app_of(ctx: CallContext, token: Any) -> str:
    _require_v2(ctx)
    if ctx.auth == "webhook":
        if not php.truthy(token):
            raise RestError("BOT_TOKEN_NOT_SPECIFIED", "Bot token is not specified")
        return f"custom{php.trim(token)}"
    return f"app{ctx.user_id}"


def _owned_bot(ctx: CallContext, params: dict[str, Any]) -> Bot:
    app_id = _app_of(ctx, params.get("botToken"))
    if not php.truthy(params.get("botId")):
        raise RestError("BOT_ID_REQUIRED", "Bot ID is required")
    bot = ctx.portal.bots.get(php.intval(params["botId"]))
    if bot is None:
        raise RestError("BOT_NOT_FOUND", "Bot not found")
    if bot.app_id != app_id:
        # Only the owning application may act for (or fetch the events of) a bot.
        raise RestError("BOT_OWNERSHIP_ERROR", "Bot is registered by another application", 403)
    return bot


def _flag(value: Any, *, default: bool) -> bool:
    """JSON booleans, or "Y"/"N" from clients without them (command-register.md)."""
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().upper() in ("Y", "TRUE", "1")
    return bool(value)


def _fields(params: dict[str, Any]) -> dict[str, Any]:
    fields = params.get("fields")
    return fields if isinstance(fields, dict) else {}


def _bot_answer(ctx: CallContext, bot: Bot) -> dict[str, Any]:
    return {"bot": bot_object(ctx.portal, bot), "users": [bot_user(bot)]}


def _apply_bot_fields(bot: Bot, fields: dict[str, Any], *, new: bool) -> None:
    """Validate every field first, then change the bot: a refused update changes nothing."""
    kind = fields.get("type", "bot" if new else None)
    if kind is not None and kind not in BOT_TYPES:
        raise RestError("BOT_INVALID_TYPE", "Invalid bot type")
    properties = fields.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    name = f"{php.trim(properties.get('name'))} {php.trim(properties.get('lastName'))}".strip()
    if new and not name:
        raise RestError("BOT_PROPERTIES_REQUIRED", "Bot properties are required")
    mode = fields.get("eventMode", "fetch" if new else None)
    if mode is not None and mode not in _MODES:
        raise RestError("BOT_INVALID_EVENT_MODE", "Invalid event mode")
    url = fields.get("webhookUrl")
    if url is not None and urlsplit(str(url)).scheme not in ("http", "https"):
        raise RestError("BOT_INVALID_CALLBACK", "Invalid callback URL")
    if mode == "webhook" and not (url or bot.webhook_url):
        raise RestError("BOT_WEBHOOK_URL_REQUIRED", "Webhook URL is required")
    if kind is not None:
        bot.type = BOT_TYPES[kind]
    bot.name = name or bot.name
    if "isSupportOpenline" in fields or bot.type == "O":
        bot.openline = bot.type == "O" or _flag(fields.get("isSupportOpenline"), default=False)
    if url is not None:
        bot.webhook_url = str(url)
    if mode is not None:
        bot.event_mode = mode  # a classic bot's events change only if Portal.classic_bots_switch


async def bot_register(ctx: CallContext, params: dict[str, Any]) -> Any:
    """Idempotent per code within the application; another application's code is taken."""
    fields = _fields(params)
    token = fields.get("botToken", params.get("botToken"))
    app_id = _app_of(ctx, token)
    if len(php.trim(token)) > MAX_TOKEN:
        # The docs give no code for an overlong token [UNCONFIRMED].
        raise RestError("BOT_REGISTER_FAILED", "Bot registration failed")
    code = php.trim(fields.get("code"))
    if not code:
        raise RestError("BOT_CODE_REQUIRED", "Bot code is required")
    for bot in ctx.portal.bots.values():
        if bot.code == code:
            if bot.app_id != app_id:
                raise RestError("BOT_CODE_ALREADY_TAKEN", "Bot code is already taken")
            return _bot_answer(ctx, bot)  # "returns the existing bot without updating"
    if sum(1 for b in ctx.portal.bots.values() if b.app_id == app_id) >= MAX_BOTS:
        raise RestError("BOT_LIMIT_EXCEEDED", "Bot limit exceeded")
    bot = Bot(id=ctx.portal.new_id(), code=code, app_id=app_id, name="", registered_v2=True)
    _apply_bot_fields(bot, fields, new=True)
    ctx.portal.bots[bot.id] = bot
    return _bot_answer(ctx, bot)


async def bot_update(ctx: CallContext, params: dict[str, Any]) -> Any:
    bot = _owned_bot(ctx, params)
    _apply_bot_fields(bot, _fields(params), new=False)
    return _bot_answer(ctx, bot)


async def bot_unregister(ctx: CallContext, params: dict[str, Any]) -> Any:
    """The bot, its commands and its event queue go."""
    bot = _owned_bot(ctx, params)
    del ctx.portal.bots[bot.id]
    for command in [c for c in ctx.portal.commands.values() if c.bot_id == bot.id]:
        del ctx.portal.commands[command.id]
    ctx.portal.event_queues.pop(bot.id, None)
    return True


async def bot_list(ctx: CallContext, params: dict[str, Any]) -> Any:
    """Unlike imbot.bot.list, only the calling application's bots, a page at a time, an
    unknown `filter.type` giving none (bot-list.md)."""
    app_id = _app_of(ctx, params.get("botToken"))
    wanted = (
        params.get("filter", {}).get("type") if isinstance(params.get("filter"), dict) else None
    )
    bots = [
        b
        for b in ctx.portal.bots.values()
        if b.app_id == app_id and (wanted is None or BOT_TYPES.get(wanted) == b.type)
    ]
    offset = max(php.intval(params.get("offset", 0)), 0)
    page = bots[offset : offset + max(php.intval(params.get("limit", BOTS_PAGE)), 1)]
    return {
        "bots": [bot_object(ctx.portal, b) for b in page],
        "users": [bot_user(b) for b in page],
        "hasNextPage": offset + len(page) < len(bots),
    }


def _command_object(command: BotCommand) -> dict[str, Any]:
    return {
        "id": command.id,
        "botId": command.bot_id,
        "command": f"/{command.command}",
        "common": command.common,
        "hidden": command.hidden,
        "extranetSupport": False,
    }


async def command_register(ctx: CallContext, params: dict[str, Any]) -> Any:
    """Idempotent per (bot, command); the old flat format is still read (until 2026-09-30)."""
    bot = _owned_bot(ctx, params)
    fields = _fields(params) or params
    raw = fields.get("command")
    if raw is None or raw == "":
        raise RestError("COMMAND_REQUIRED", "Command is required")
    name = php.trim(raw).lstrip("/") if isinstance(raw, str) else ""
    if not name or not name.isascii() or not name.isalnum():
        raise RestError("COMMAND_NAME_INVALID", "Command name is invalid")
    hidden = _flag(fields.get("hidden"), default=False)
    title = fields.get("title")
    if not hidden and not (isinstance(title, dict) and title):
        raise RestError("COMMAND_TITLE_REQUIRED", "Command title is required")
    for existing in ctx.portal.commands.values():
        if existing.bot_id == bot.id and existing.command == name.lower():
            return {"command": _command_object(existing)}
    hints = fields.get("params")
    hints = hints if isinstance(hints, dict) else {}
    command = BotCommand(
        id=ctx.portal.new_id(),
        bot_id=bot.id,
        app_id=bot.app_id,
        command=name.lower(),
        handler="",  # v2 commands reach the bot through its event mode, not a handler URL
        common=_flag(fields.get("common"), default=False),
        hidden=hidden,
        lang=[
            {"LANGUAGE_ID": lang, "TITLE": text, "PARAMS": hints.get(lang, "")}
            for lang, text in (title or {}).items()
        ],
    )
    ctx.portal.commands[command.id] = command
    return {"command": _command_object(command)}


async def command_update(ctx: CallContext, params: dict[str, Any]) -> Any:
    """command-update.md: `title`/`params` per language, a null value removing that language
    and an absent one keeping it; `common`/`hidden` as Y/N."""
    bot = _owned_bot(ctx, params)
    command = ctx.portal.commands.get(php.intval(params.get("commandId")))
    if command is None or command.bot_id != bot.id:
        raise RestError("COMMAND_NOT_FOUND", "Command not found")
    fields = _fields(params)
    raw = fields.get("command")
    if raw is not None:
        name = php.trim(raw).lstrip("/") if isinstance(raw, str) else ""
        if not name:
            raise RestError("COMMAND_NAME_EMPTY", "Command name is empty")
        if not name.isascii() or not name.isalnum():
            raise RestError("COMMAND_NAME_INVALID", "Command name is invalid")
        taken = any(
            c.bot_id == bot.id and c.command == name.lower() and c.id != command.id
            for c in ctx.portal.commands.values()
        )
        if taken:
            raise RestError("COMMAND_ALREADY_EXISTS", "Command already exists")
        command.command = name.lower()
    command.lang = _updated_lang(command.lang, fields.get("title"), fields.get("params"))
    if "common" in fields:
        command.common = _flag(fields["common"], default=command.common)
    if "hidden" in fields:
        command.hidden = _flag(fields["hidden"], default=command.hidden)
    return {"command": _command_object(command)}


def _updated_lang(lang: list[dict[str, Any]], title: Any, hints: Any) -> list[dict[str, Any]]:
    """`params` applies only to the languages given in `title` (command-update.md)."""
    if not isinstance(title, dict):
        return lang
    hints = hints if isinstance(hints, dict) else {}
    items = {item["LANGUAGE_ID"]: dict(item) for item in lang}
    for language, text in title.items():
        if text is None or text == "":  # null; a form-encoded null arrives as nothing or ""
            items.pop(language, None)
            continue
        item = items.setdefault(language, {"LANGUAGE_ID": language, "PARAMS": ""})
        item["TITLE"] = text
        if language in hints:
            item["PARAMS"] = hints[language] or ""
    return list(items.values())


async def command_list(ctx: CallContext, params: dict[str, Any]) -> Any:
    """The owner's bot's commands (command-list.md): title and params in the portal's
    language, falling back to the first one stored [UNCONFIRMED: which language is the
    default]."""
    bot = _owned_bot(ctx, params)
    commands = []
    for command in (c for c in ctx.portal.commands.values() if c.bot_id == bot.id):
        texts = {item["LANGUAGE_ID"]: item for item in command.lang}
        shown = texts.get(ctx.portal.language) or next(iter(texts.values()), {})
        commands.append(
            _command_object(command)
            | {
                "title": shown.get("TITLE", ""),
                "params": shown.get("PARAMS", ""),
                "category": bot.name,
                "context": "",
            }
        )
    return {"commands": commands}


def _cut(text: str) -> str:
    """A text longer than MAX_MESSAGE, cut (chat-message-send.md) [UNCONFIRMED: where
    exactly]."""
    return text[: MAX_MESSAGE - len(_CUT)] + _CUT if len(text) > MAX_MESSAGE else text


def _message_fields(params: dict[str, Any], bot_id: int) -> dict[str, Any]:
    fields = _fields(params)
    text = _cut(php.trim(fields.get("message")))
    if not text and not fields.get("attach"):
        raise RestError("EMPTY_MESSAGE", "Message is empty")
    keyboard = fields.get("keyboard")
    return {
        "text": text,
        # The v2 controller hands `keyboard` to the same Keyboard::getKeyboardByJson, with the
        # calling bot's id, and answers KEYBOARD_ERROR when it keeps nothing.
        "keyboard": keyboard_of(keyboard, bot_id) if php.truthy(keyboard) else None,
        "attach": php.as_list(fields.get("attach")),
        "system": _flag(fields.get("system"), default=False),
    }


async def message_send(ctx: CallContext, params: dict[str, Any]) -> Any:
    """A member bot posts; a non-member only a system message (§00 item 6). In an open line
    the connector forwards what is neither system nor skipConnector (§00 item 7)."""
    bot = _owned_bot(ctx, params)
    dialog_id = php.trim(params.get("dialogId"))
    if not dialog_id:
        raise RestError("DIALOG_ID_EMPTY", "Dialog ID can't be empty")  # [UNCONFIRMED] v1's
    chat = imbot.chat_of_dialog(ctx.portal, bot, dialog_id)
    fields = _message_fields(params, bot.id)
    skip = _flag(_fields(params).get("skipConnector"), default=False)
    if bot.id not in chat.members and not fields["system"]:
        raise RestError("ACCESS_DENIED", "Access denied", 403)
    message = ctx.portal.post(
        chat.id,
        bot.id,
        to_customer=chat.forwards_to_customer(system=fields["system"], skip_connector=skip),
        via="imbot.v2.Chat.Message.send",
        **fields,
    )
    return {"id": message.id, "uuidMap": {}}


async def message_update(ctx: CallContext, params: dict[str, Any]) -> Any:
    """Only the bot's own messages, never a system one (authorId 0); `keyboard` (or
    `attach`) "N" or empty removes it (chat-message-update.md). No edit window is documented
    for v2 (v1 has three days) [UNCONFIRMED]."""
    bot = _owned_bot(ctx, params)
    message = ctx.portal.messages.get(php.intval(params.get("messageId")))
    if message is None or message.author_id != bot.id or message.system:
        raise RestError("ACCESS_DENIED", "Access denied", 403)
    fields = _fields(params)
    parts = {name: fields[name] for name in ("keyboard", "attach") if name in fields}
    for name, value in parts.items():
        removed = value in ("", "N", [], {})
        kept = keyboard_of(value, bot.id) if name == "keyboard" and not removed else value
        parts[name] = None if removed else php.as_list(kept)
    if "message" in fields:
        text = php.trim(fields["message"])
        if not text:
            raise RestError("EMPTY_MESSAGE", "Message is empty")  # [UNCONFIRMED] send's code
        message.text = _cut(text)
    for name, value in parts.items():
        setattr(message, name, value)
    return {"result": True}


async def command_answer(ctx: CallContext, params: dict[str, Any]) -> Any:
    """`{"result": true}` both when the answer is posted (a system message where the bot is
    not a member) and when the answer window is over and nothing is posted: the v2
    controller maps `Im\\Command::addMessage`'s silent `true` (§0 item 13) to the same answer
    (`Imbot\\V2\\Controller\\Command::answerAction`, §00 item 9)."""
    bot = _owned_bot(ctx, params)
    command = ctx.portal.commands.get(php.intval(params.get("commandId")))
    if command is None or command.bot_id != bot.id:
        # `validateCommandOwnership` in the same controller.
        raise RestError("COMMAND_NOT_FOUND", "Command not found")
    message_id = php.intval(params.get("messageId"))
    fields = _message_fields(params, bot.id)
    granted = ctx.portal.answer_grants.get((command.id, message_id))
    source = ctx.portal.messages.get(message_id)
    if granted is None or source is None or ctx.portal.now() - granted > imbot.ANSWER_WINDOW:
        return {"result": True}
    chat = ctx.portal.chats[source.chat_id]
    system = fields.pop("system") or bot.id not in chat.members
    ctx.portal.post(
        chat.id,
        bot.id,
        system=system,
        to_customer=chat.forwards_to_customer(system=system, skip_connector=False),
        via="imbot.v2.Command.answer",
        **fields,
    )
    return {"result": True}


async def event_get(ctx: CallContext, params: dict[str, Any]) -> Any:
    """`{events, nextOffset, hasMore}`; `offset` acknowledges every event below it."""
    bot = _owned_bot(ctx, params)
    offset = php.intval(params["offset"]) if php.is_numeric(params.get("offset")) else None
    # The docs give 1-1000 and no error for other values: clamped [UNCONFIRMED].
    limit = min(max(php.intval(params.get("limit", DEFAULT_LIMIT)), 1), MAX_LIMIT)
    page = ctx.portal.queue_of(bot.id).fetch(offset, limit, ctx.portal.now())
    return {
        "events": [event.as_fetched() for event in page.events],
        "nextOffset": page.next_offset,
        "hasMore": page.has_more,
    }


async def revision_get(ctx: CallContext, _params: dict[str, Any]) -> Any:
    _require_v2(ctx)  # any caller, no botToken: "only standard authorization errors"
    return dict(REVISION)
