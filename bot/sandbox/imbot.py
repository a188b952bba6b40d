"""imbot.* methods (protocol notes §6): bots, commands, messages, the webhook CLIENT_ID rules."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

from bot.sandbox import php
from bot.sandbox.keyboard import keyboard_of
from bot.sandbox.portal import Bot, BotCommand, Chat, Portal, RestError
from bot.sandbox.rest import CallContext

# A command answer is accepted for this long after the command arrived; later it is dropped
# silently while the method still answers true (§0 item 13).
ANSWER_WINDOW: Final = 600.0
EDIT_WINDOW: Final = 3 * 24 * 3600.0  # a bot's message can be edited for three days (§6.7)
_EVENTS: Final = ("EVENT_MESSAGE_ADD", "EVENT_WELCOME_MESSAGE", "EVENT_BOT_DELETE")
_OPTIONAL_EVENTS: Final = ("EVENT_MESSAGE_UPDATE", "EVENT_MESSAGE_DELETE")


def app_of(ctx: CallContext, params: dict[str, Any]) -> str:
    """The calling application: `custom<CLIENT_ID>` for a webhook (§6.8)."""
    client_id = params.get("CLIENT_ID")
    if ctx.auth == "webhook":
        if not php.truthy(client_id):
            raise RestError("ACCESS_DENIED", "Access denied! Client ID not specified", 403)
        return f"custom{client_id}"
    return f"app{ctx.user_id}"


def _with_client_id(url: str, app_id: str) -> str:
    """Bitrix24 appends ?CLIENT_ID= (or &CLIENT_ID=) to a webhook bot's handler URLs (§6.8)."""
    if not app_id.startswith("custom"):
        return url
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}CLIENT_ID={app_id.removeprefix('custom')}"


def _handler(params: dict[str, Any], key: str, app_id: str, *, required: bool) -> str | None:
    url = params.get(key) or params.get("EVENT_HANDLER")
    if not url:
        if required:
            raise RestError(f"{key}_ERROR", f'Handler for "{key}" isn\'t specified')
        return None
    if urlsplit(str(url)).scheme not in ("http", "https"):
        raise RestError(f"{key}_ERROR", f'Wrong handler URL for "{key}"')
    return _with_client_id(str(url), app_id)


def _owned_bot(ctx: CallContext, params: dict[str, Any], app_id: str) -> Bot:
    bot = ctx.portal.bots.get(php.intval(params.get("BOT_ID")))
    if bot is None:
        raise RestError("BOT_ID_ERROR", "Bot not found")
    if bot.app_id != app_id:
        raise RestError("APP_ID_ERROR", "Bot was installed by another REST application")
    return bot


def _apply_bot_fields(bot: Bot, fields: dict[str, Any], app_id: str, *, new: bool) -> None:
    if "TYPE" in fields:
        bot.type = fields["TYPE"] if fields["TYPE"] in ("O", "B", "H", "S") else "B"
    if "OPENLINE" in fields or bot.type == "O":
        bot.openline = bot.type == "O" or php.yes(fields.get("OPENLINE"))
    for key in _EVENTS:
        url = _handler(fields, key, app_id, required=new)
        if url:
            bot.handlers[key] = url
    for key in _OPTIONAL_EVENTS:
        url = _handler(fields, key, app_id, required=False)
        # Update/delete events reach only TYPE=S/O or OPENLINE=Y bots (§1.5).
        if url and (bot.type in ("S", "O") or bot.openline):
            bot.handlers[key] = url
    properties = fields.get("PROPERTIES")
    if isinstance(properties, dict):
        name = f"{properties.get('NAME', '')} {properties.get('LAST_NAME', '')}".strip()
        if not name and new:
            raise RestError("NAME_ERROR", "Bot name isn't specified")
        bot.name = name or bot.name
    elif new:
        raise RestError("NAME_ERROR", "Bot name isn't specified")


async def register(ctx: CallContext, params: dict[str, Any]) -> Any:
    """imbot.register -> BOT_ID; a second registration of a code answers the existing id."""
    app_id = app_of(ctx, params)
    code = php.trim(params.get("CODE"))
    if not code:
        raise RestError("CODE_ERROR", "Bot code isn't specified")
    for bot in ctx.portal.bots.values():
        if bot.code == code:
            return bot.id  # whichever application owns it (§00 item 8)
    bot = Bot(id=ctx.portal.new_id(), code=code, app_id=app_id, name="")
    _apply_bot_fields(bot, {**params, "TYPE": params.get("TYPE", "B")}, app_id, new=True)
    ctx.portal.bots[bot.id] = bot
    return bot.id


async def update(ctx: CallContext, params: dict[str, Any]) -> Any:
    """imbot.update {BOT_ID, FIELDS: {CODE, TYPE, OPENLINE, EVENT_*, PROPERTIES}}."""
    app_id = app_of(ctx, params)
    bot = _owned_bot(ctx, params, app_id)
    fields = params.get("FIELDS")
    if not isinstance(fields, dict) or not fields:
        raise RestError("WRONG_REQUEST", "Update fields can't be empty")
    if php.truthy(fields.get("CODE")):
        bot.code = str(fields["CODE"])
    _apply_bot_fields(bot, fields, app_id, new=False)
    return True


async def unregister(ctx: CallContext, params: dict[str, Any]) -> Any:
    """imbot.unregister: the bot, its commands and its private chats go."""
    bot = _owned_bot(ctx, params, app_of(ctx, params))
    del ctx.portal.bots[bot.id]
    for command in [c for c in ctx.portal.commands.values() if c.bot_id == bot.id]:
        del ctx.portal.commands[command.id]
    return True


async def bot_list(ctx: CallContext, _params: dict[str, Any]) -> Any:
    """imbot.bot.list -> {BOT_ID: {ID, NAME, CODE, OPENLINE}}: the bots of every
    application, without their owner (§00 item 8)."""
    return {
        str(bot.id): {
            "ID": bot.id,
            "NAME": bot.name,
            "CODE": bot.code,
            "OPENLINE": "Y" if bot.openline else "N",
        }
        for bot in ctx.portal.bots.values()
    }


async def command_register(ctx: CallContext, params: dict[str, Any]) -> Any:
    """imbot.command.register -> COMMAND_ID; the same command of the same bot answers its id."""
    app_id = app_of(ctx, params)
    bot = _owned_bot(ctx, params, app_id)
    name = php.trim(params.get("COMMAND")).lstrip("/")
    if not name or not name.isalnum() or not name.isascii():
        raise RestError("COMMAND_ERROR", "Command isn't specified")
    handler = _handler(params, "EVENT_COMMAND_ADD", app_id, required=True)
    lang_list = _lang_list(params.get("LANG"))
    for existing in ctx.portal.commands.values():
        if existing.bot_id == bot.id and existing.command == name.lower():
            return existing.id
    command = BotCommand(
        id=ctx.portal.new_id(),
        bot_id=bot.id,
        app_id=app_id,
        command=name.lower(),
        handler=str(handler),
        common=php.yes(params.get("COMMON")),
        hidden=php.yes(params.get("HIDDEN")),
        lang=lang_list,
    )
    ctx.portal.commands[command.id] = command
    return command.id


def _owned_command(ctx: CallContext, params: dict[str, Any], app_id: str) -> BotCommand:
    command = ctx.portal.commands.get(php.intval(params.get("COMMAND_ID")))
    if command is None:
        raise RestError("COMMAND_ID_ERROR", "Command not found")
    if command.app_id != app_id:
        raise RestError("APP_ID_ERROR", "Command was installed by another REST application")
    return command


async def command_update(ctx: CallContext, params: dict[str, Any]) -> Any:
    """imbot.command.update {COMMAND_ID, FIELDS: {EVENT_COMMAND_ADD, LANG, COMMON, HIDDEN}}."""
    app_id = app_of(ctx, params)
    command = _owned_command(ctx, params, app_id)
    fields = params.get("FIELDS")
    if not isinstance(fields, dict) or not fields:
        raise RestError("WRONG_REQUEST", "Update fields can't be empty")
    if "EVENT_COMMAND_ADD" in fields:
        command.handler = str(_handler(fields, "EVENT_COMMAND_ADD", app_id, required=True))
    if "LANG" in fields:
        command.lang = _lang_list(fields["LANG"])
    if "COMMON" in fields:
        command.common = php.yes(fields["COMMON"])
    if "HIDDEN" in fields:
        command.hidden = php.yes(fields["HIDDEN"])
    return True


def _lang_list(lang: Any) -> list[dict[str, Any]]:
    items = list(lang.values()) if isinstance(lang, dict) else lang
    valid = (
        isinstance(items, list)
        and bool(items)
        and all(
            isinstance(item, dict) and item.get("LANGUAGE_ID") and item.get("TITLE")
            for item in items
        )
    )
    if not valid:
        raise RestError("LANG_ERROR", "Lang set can't be empty")
    return list(items)


async def command_unregister(ctx: CallContext, params: dict[str, Any]) -> Any:
    command = _owned_command(ctx, params, app_of(ctx, params))
    del ctx.portal.commands[command.id]
    return True


def chat_of_dialog(portal: Portal, bot: Bot, dialog_id: str) -> Chat:
    if dialog_id.startswith("chat"):
        chat = portal.chats.get(php.intval(dialog_id.removeprefix("chat")))
        if chat is None:
            raise RestError("DIALOG_ID_EMPTY", "Dialog ID can't be empty")
        return chat
    portal.user(php.intval(dialog_id))
    return portal.private_chat(bot.id, php.intval(dialog_id))


def _bot_for_message(ctx: CallContext, params: dict[str, Any], app_id: str) -> Bot:
    if php.truthy(params.get("BOT_ID")):
        return _owned_bot(ctx, params, app_id)
    for bot in ctx.portal.bots.values():
        if bot.app_id == app_id:
            return bot  # "if omitted, the first bot of the calling app is used"
    raise RestError("BOT_ID_ERROR", "Bot not found")


def _message_fields(params: dict[str, Any], bot_id: int) -> dict[str, Any]:
    message = php.trim(params.get("MESSAGE"))
    if not message and not params.get("ATTACH"):
        raise RestError("MESSAGE_EMPTY", "Message can't be empty")
    keyboard = params.get("KEYBOARD")
    return {
        "text": message,
        "keyboard": keyboard_of(keyboard, bot_id) if php.truthy(keyboard) else None,
        "attach": php.as_list(params.get("ATTACH")),
    }


async def message_add(ctx: CallContext, params: dict[str, Any]) -> Any:
    """imbot.message.add -> message id. In an open line, the connector forwards a message that
    is neither SYSTEM=Y nor SKIP_CONNECTOR=Y to the customer (§00 item 7)."""
    app_id = app_of(ctx, params)
    bot = _bot_for_message(ctx, params, app_id)
    dialog_id = php.trim(params.get("DIALOG_ID"))
    if not dialog_id:
        raise RestError("DIALOG_ID_EMPTY", "Dialog ID can't be empty")
    chat = chat_of_dialog(ctx.portal, bot, dialog_id)
    if bot.id not in chat.members and not php.yes(params.get("SYSTEM")):
        # CIMChat::AddMessage: only members post, unless the message is a system one (§00
        # item 6).
        raise RestError("WRONG_REQUEST", "Message isn't added")
    fields = _message_fields(params, bot.id)
    system = php.yes(params.get("SYSTEM"))
    skip = php.yes(params.get("SKIP_CONNECTOR"))
    message = ctx.portal.post(
        chat.id,
        bot.id,
        system=system,
        to_customer=chat.forwards_to_customer(system=system, skip_connector=skip),
        via="imbot.message.add",
        **fields,
    )
    return message.id


async def message_update(ctx: CallContext, params: dict[str, Any]) -> Any:
    """imbot.message.update -> true (§6.7): only the calling app's bot's own messages, for three
    days; an empty MESSAGE deletes the message, an empty or `N` KEYBOARD/ATTACH/MENU clears it."""
    bot = _bot_for_message(ctx, params, app_of(ctx, params))
    message_id = php.intval(params.get("MESSAGE_ID"))
    if message_id <= 0:
        raise RestError("MESSAGE_ID_ERROR", "Message ID can't be empty")
    message = ctx.portal.messages.get(message_id)
    if (
        message is None
        or message.author_id != bot.id
        or ctx.portal.now() - message.posted_at > EDIT_WINDOW
    ):
        raise RestError(
            "CANT_EDIT_MESSAGE", "Time has expired for modification or you don't have access"
        )
    parts = {name: params[name] for name in ("KEYBOARD", "ATTACH", "MENU") if name in params}
    for name, value in parts.items():
        if value not in ("", "N") and not isinstance(value, dict | list):
            raise RestError(f"{name}_ERROR", f"Incorrect {name.lower()} params")
    if parts.get("KEYBOARD") not in (None, "", "N"):
        parts["KEYBOARD"] = keyboard_of(parts["KEYBOARD"], bot.id)
    if "MESSAGE" in params and not php.trim(params["MESSAGE"]):
        del ctx.portal.messages[message.id]
        return True
    if "MESSAGE" in params:
        message.text = php.trim(params["MESSAGE"])
    for name, value in parts.items():
        setattr(message, name.lower(), None if value in ("", "N") else php.as_list(value))
    return True


async def command_answer(ctx: CallContext, params: dict[str, Any]) -> Any:
    """imbot.command.answer -> message id; `true` and nothing posted after the 10-minute
    window (§0 item 13). A normal message only when the bot is a member of the chat, else a
    system one; the connector forwards a normal message in an open line to the customer and
    never a system one (§00 item 7)."""
    app_id = app_of(ctx, params)
    command = ctx.portal.commands.get(php.intval(params.get("COMMAND_ID")))
    if command is None and php.truthy(params.get("COMMAND")):
        name = str(params["COMMAND"]).lower()
        command = next(
            (c for c in ctx.portal.commands.values() if c.app_id == app_id and c.command == name),
            None,
        )
    if command is None or command.app_id != app_id:
        raise RestError("COMMAND_ID_ERROR", "Command not found")
    message_id = php.intval(params.get("MESSAGE_ID"))
    if not message_id:
        raise RestError("MESSAGE_ID_EMPTY", "Message ID can't be empty")
    fields = _message_fields(params, command.bot_id)
    granted = ctx.portal.answer_grants.get((command.id, message_id))
    source = ctx.portal.messages.get(message_id)
    if granted is None or source is None or ctx.portal.now() - granted > ANSWER_WINDOW:
        return True
    chat = ctx.portal.chats[source.chat_id]
    # In a chat the bot is not a member of, the answer is a system message.
    system = php.yes(params.get("SYSTEM")) or command.bot_id not in chat.members
    message = ctx.portal.post(
        chat.id,
        command.bot_id,
        system=system,
        # A command answer has no SKIP_CONNECTOR (§00 item 7).
        to_customer=chat.forwards_to_customer(system=system, skip_connector=False),
        via="imbot.command.answer",
        **fields,
    )
    return message.id
