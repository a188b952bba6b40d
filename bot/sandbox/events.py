"""The sandbox's event sender: bodies built as Bitrix24 builds them, posted to bot handlers.

Form-urlencoded with PHP nested keys, every value a string, the field sets of protocol notes
§1.5 and §1.9. Routing follows `Im\\Command::findCommands` and `Im\\Bot::onMessageAdd` (§0 items
11, 12, 14): a message whose lines hold registered commands fires ONIMCOMMANDADD (the same
command on several lines collapses into one `data[COMMAND]` entry, the last line's), and only a
message that matched no command fires ONIMBOTMESSAGEADD.

A Chatbots 2.0 bot (`Portal.speaks_v2`) hears the same things as ONIMBOTV2* events
(`bot.sandbox.v2.events`), queued for `imbot.v2.Event.get` in fetch mode or posted to its
`webhookUrl` in webhook mode; a classic bot's path is unchanged.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from bot.bitrix.form import flatten_form
from bot.sandbox.keyboard import action_of, buttons_of
from bot.sandbox.portal import Bot, BotCommand, Chat, Message, Portal, User
from bot.sandbox.v2 import events as v2
from bot.sandbox.v2.queue import QueuedEvent
from bot.sandbox.v2.shapes import webhook_form

# The server's own pattern for a command line (§1.5, ONIMCOMMANDADD).
_COMMAND_LINE: Final = re.compile(r"^/(?P<COMMAND>[^ \n]*) ?(?P<PARAMS>.*)$", re.MULTILINE)
_MENTION: Final = re.compile(r"\[USER=(\d+)\][^\[]*\[/USER\]\s*", re.IGNORECASE)
_TIMEOUT: Final = aiohttp.ClientTimeout(total=10)
QUEUED: Final = "queue:"  # a Delivery's url prefix for an event queued for a fetch-mode bot


@dataclass(frozen=True)
class Delivery:
    """One event posted to a handler, and what the handler answered."""

    event: str
    url: str
    form: dict[str, Any]
    status: int | None  # None: the handler could not be reached
    body: str


class EventSender:
    """Turns what users do in the sandbox portal into events for the bots' handlers."""

    def __init__(self, portal: Portal, session: aiohttp.ClientSession) -> None:
        self.portal = portal
        self.session = session
        self._handler_ids: dict[str, int] = {}

    async def send_message(
        self, author_id: int, to: int | str, text: str, *, mention: int | None = None
    ) -> list[Delivery]:
        """`author_id` writes `text` to a bot (its user id) or into a chat (`chat<ID>`)."""
        portal = self.portal
        author = portal.user(author_id)
        chat = self._chat_for(author_id, to)
        original = f"[USER={mention}]bot[/USER] {text}" if mention else text
        message = portal.post(chat.id, author_id, text, via="user")
        matched = self._find_commands(chat, text)
        if matched:
            classic = [m for m in matched if not self._is_v2(m[0].bot_id)]
            deliveries = [
                await self.post(command.handler, self.command_form(message, author, chat, entries))
                for command, entries in _by_command(classic)
            ]
            fresh = [m for m in matched if self._is_v2(m[0].bot_id)]
            events = v2.command_events(portal, message, author, chat, fresh)
            deliveries += [await self.deliver_v2(*event) for event in events]
            return deliveries
        deliveries = []
        for bot in self._bots_to_tell(chat, mention):
            if portal.speaks_v2(bot):
                event = v2.message_event(portal, bot, message, author, chat)
                deliveries.append(await self.deliver_v2(*event))
                continue
            form = self.message_form(bot, message, author, chat, original)
            deliveries.append(await self.post(bot.handlers["EVENT_MESSAGE_ADD"], form))
        return deliveries

    async def click(self, user_id: int, message_id: int, button: int) -> Delivery | None:
        """A click on a keyboard button with a COMMAND: ONIMCOMMANDADD, context KEYBOARD.
        None for any other button: a LINK opens in the user's browser, an ACTION runs in
        their client, and the bot hears of neither (message-keyboards.md)."""
        message = self.portal.messages[message_id]
        spec = buttons_of(message.keyboard)[button]
        if action_of(spec, message.author_id) != "COMMAND":
            return None
        return await self.press(
            user_id, message_id, str(spec["COMMAND"]), str(spec.get("COMMAND_PARAMS", ""))
        )

    async def press(self, user_id: int, message_id: int, command: str, params: str) -> Delivery:
        """A click as the server receives it: the command and params of a button the user's
        client shows, which may be a keyboard the bot has removed since (the server checks
        only that the user is in the chat). Like `Im\\Command::onCommandAdd` for a click, the
        body has the keyboard message's id and no TEMPLATE_ID of its own (§6.9)."""
        message = self.portal.messages[message_id]
        bot_command = next(
            c
            for c in self.portal.commands.values()
            if c.bot_id == message.author_id and c.command == command.lower()
        )
        chat = self.portal.chats[message.chat_id]
        if self._is_v2(bot_command.bot_id):
            user = self.portal.user(user_id)
            [event] = v2.command_events(
                self.portal, message, user, chat, [(bot_command, params)], context="keyboard"
            )
            return await self.deliver_v2(*event)
        form = self.command_form(
            message,
            self.portal.user(user_id),
            chat,
            [(bot_command, params, "KEYBOARD")],
            text=f"/{bot_command.command} {params}".strip(),
        )
        del form["data"]["PARAMS"]["TEMPLATE_ID"]
        return await self.post(bot_command.handler, form)

    async def join(self, bot_id: int, user_id: int, chat_id: int | None = None) -> Delivery:
        """A user opens a dialog with the bot, or adds it to a chat: ONIMBOTJOINCHAT."""
        bot = self.portal.bots[bot_id]
        chat = self.portal.chats[chat_id] if chat_id else self.portal.private_chat(bot.id, user_id)
        if chat_id:
            chat.members.add(bot.id)
        user = self.portal.user(user_id)
        if self.portal.speaks_v2(bot):
            return await self.deliver_v2(*v2.join_event(self.portal, bot, user, chat))
        params = {
            "CHAT_TYPE": chat.type,
            "MESSAGE_TYPE": chat.type,
            "BOT_ID": bot.id,
            "USER_ID": user.id,
            "DIALOG_ID": user.id if chat.type == "P" else chat.dialog_id,
            "LANGUAGE": self.portal.language,
        }
        if chat.type == "P":
            params |= {"TO_USER_ID": user.id, "FROM_USER_ID": bot.id}
        else:
            params |= {
                "CHAT_ID": chat.id,
                "CHAT_AUTHOR_ID": chat.author_id,
                "CHAT_ENTITY_TYPE": chat.entity_type,
                "CHAT_ENTITY_ID": chat.entity_id,
                "ACCESS_HISTORY": 1,
            }
        data = {
            "BOT": {str(bot.id): self._bot_block(bot)},
            "PARAMS": params,
            "USER": _user_block(user, full=True),
        }
        return await self.post(
            bot.handlers["EVENT_WELCOME_MESSAGE"], self._envelope("ONIMBOTJOINCHAT", bot, data)
        )

    async def delete_bot(self, bot_id: int) -> Delivery:
        """The bot is deleted in the portal: ONIMBOTDELETE, and it is gone."""
        bot = self.portal.bots.pop(bot_id)
        if self.portal.speaks_v2(bot):
            # Queued too, though Event.get no longer knows the bot [UNCONFIRMED].
            return await self.deliver_v2(*v2.delete_event(self.portal, bot))
        data = {"BOT_ID": bot.id, "BOT_CODE": bot.code}
        return await self.post(
            bot.handlers["EVENT_BOT_DELETE"], self._envelope("ONIMBOTDELETE", bot, data)
        )

    async def deliver_v2(self, bot: Bot, event: str, data: dict[str, Any]) -> Delivery:
        """A Chatbots 2.0 event: into a fetch-mode bot's queue, or POSTed to its webhookUrl."""
        if bot.event_mode == "fetch":
            queued = QueuedEvent(self.portal.new_id(), event, self.portal.now(), data)
            self.portal.queue_of(bot.id).push(queued)
            return Delivery(event, f"{QUEUED}{bot.id}", data, 200, str(queued.event_id))
        handler_id = self._handler_ids.setdefault(f"{bot.id}:{event}", self.portal.new_id())
        form = webhook_form(self.portal, bot, event, data, handler_id)
        return await self.post(bot.webhook_url, form)

    async def post(self, url: str, form: Mapping[str, Any]) -> Delivery:
        """POST a form as Bitrix24's queue server does; any body, any status is recorded."""
        event = str(form.get("event", ""))
        try:
            async with self.session.post(url, data=flatten_form(form), timeout=_TIMEOUT) as answer:
                return Delivery(event, url, dict(form), answer.status, await answer.text())
        except (aiohttp.ClientError, TimeoutError) as error:
            return Delivery(event, url, dict(form), None, type(error).__name__)

    def command_form(
        self,
        message: Message,
        author: User,
        chat: Chat,
        entries: list[tuple[BotCommand, str, str]],
        *,
        text: str | None = None,
    ) -> dict[str, Any]:
        """ONIMCOMMANDADD for (command, params, context) entries of one message."""
        commands: dict[str, Any] = {}
        for command, line, context in entries:
            bot = self.portal.bots[command.bot_id]
            self.portal.answer_grants[(command.id, message.id)] = self.portal.now()
            commands[str(command.id)] = self._bot_block(bot) | {
                "COMMAND": command.command,
                "COMMAND_ID": command.id,
                "COMMAND_PARAMS": line,
                "COMMAND_CONTEXT": context,
                "MESSAGE_ID": message.id,
            }
        bot = self.portal.bots[entries[0][0].bot_id]
        params = self._message_params(
            message, author, chat, text if text is not None else message.text, bot
        )
        if chat.type != "P":
            params["BOT_IN_CHAT"] = {
                str(b): b for b in sorted(chat.members & set(self.portal.bots))
            }
        data = {"COMMAND": commands, "PARAMS": params, "USER": _user_block(author, full=False)}
        return self._envelope("ONIMCOMMANDADD", bot, data)

    def message_form(
        self, bot: Bot, message: Message, author: User, chat: Chat, original: str
    ) -> dict[str, Any]:
        """ONIMBOTMESSAGEADD: a message to the bot, or one mentioning it in a group chat."""
        params = self._message_params(message, author, chat, message.text, bot)
        params["COMMAND_CONTEXT"] = "TEXTAREA"
        if chat.type != "P":
            mentioned = [int(m) for m in _MENTION.findall(original)]
            params |= {
                "MENTIONED_LIST": {str(m): m for m in mentioned},
                "MESSAGE_ORIGINAL": original,
            }
        data = {
            "BOT": {str(bot.id): self._bot_block(bot)},
            "PARAMS": params,
            "USER": _user_block(author, full=True),
        }
        return self._envelope("ONIMBOTMESSAGEADD", bot, data)

    def _message_params(
        self, message: Message, author: User, chat: Chat, text: str, bot: Bot
    ) -> dict[str, Any]:
        private = chat.type == "P"
        params: dict[str, Any] = {
            "MESSAGE": text,
            "TEMPLATE_ID": str(uuid.uuid4()),
            "MESSAGE_TYPE": chat.type,
            "FROM_USER_ID": author.id,
            "DIALOG_ID": author.id if private else chat.dialog_id,
            "TO_CHAT_ID": chat.id,
            "AUTHOR_ID": author.id,
            "SYSTEM": "N",
        }
        if private:
            params |= {"TO_USER_ID": bot.id}
        else:
            params |= {
                "CHAT_ID": chat.id,
                "CHAT_TITLE": chat.title,
                "CHAT_AUTHOR_ID": chat.author_id,
                "CHAT_ENTITY_TYPE": chat.entity_type,
                "CHAT_ENTITY_ID": chat.entity_id,
                "CHAT_ENTITY_DATA_1": chat.entity_data_1,
                "CHAT_ENTITY_DATA_2": chat.entity_data_2,
                "CHAT_ENTITY_DATA_3": chat.entity_data_3,
                "IS_MANAGER": "N",
            }
        flags = (
            "PUSH",
            "SKIP_COMMAND",
            "SKIP_CONNECTOR",
            "SILENT_CONNECTOR",
            "IMPORTANT_CONNECTOR",
        )
        params |= dict.fromkeys(flags, "N") | {"PUSH": "Y"}
        params |= {
            "MESSAGE_ID": message.id,
            "CHAT_TYPE": chat.type,
            "LANGUAGE": self.portal.language,
        }
        return params

    def _bot_block(self, bot: Bot) -> dict[str, Any]:
        # A webhook-registered bot gets no OAuth tokens in its blocks (§1.4, §6.8).
        return {"BOT_ID": bot.id, "BOT_CODE": bot.code}

    def _envelope(self, event: str, bot: Bot, data: dict[str, Any]) -> dict[str, Any]:
        handler_id = self._handler_ids.setdefault(f"{bot.id}:{event}", self.portal.new_id())
        return {
            "event": event,
            "event_handler_id": handler_id,
            "data": data,
            "ts": int(self.portal.now()),
            "auth": {
                "domain": self.portal.domain,
                "client_endpoint": f"https://{self.portal.domain}/rest/",
                "server_endpoint": "https://oauth.bitrix.info/rest/",
                "member_id": self.portal.member_id,
                "application_token": bot.application_token,
            },
        }

    def _is_v2(self, bot_id: int) -> bool:
        return self.portal.speaks_v2(self.portal.bots[bot_id])

    def _chat_for(self, author_id: int, to: int | str) -> Chat:
        if isinstance(to, str) and to.startswith("chat"):
            return self.portal.chats[int(to.removeprefix("chat"))]
        return self.portal.private_chat(author_id, int(to))

    def _find_commands(self, chat: Chat, text: str) -> list[tuple[BotCommand, str]]:
        found = []
        for line in _COMMAND_LINE.finditer(text):
            name = line.group("COMMAND")  # matched case-sensitively (§00 item 5)
            found += [
                (command, line.group("PARAMS"))
                for command in self.portal.commands.values()
                if command.command == name and self._command_reaches(command, chat)
            ]
        return found

    def _command_reaches(self, command: BotCommand, chat: Chat) -> bool:
        bot = self.portal.bots.get(command.bot_id)
        if bot is None or (chat.entity_type == "LINES" and not bot.openline):
            return False
        return command.common or bot.id in chat.members

    def _bots_to_tell(self, chat: Chat, mention: int | None) -> list[Bot]:
        bots = [b for b in self.portal.bots.values() if b.id in chat.members]
        return bots if chat.type == "P" else [b for b in bots if b.id == mention]


def _by_command(
    matched: list[tuple[BotCommand, str]],
) -> list[tuple[BotCommand, list[tuple[BotCommand, str, str]]]]:
    """Group by handler URL; `data[COMMAND]` is keyed by COMMAND_ID, so a repeated command
    keeps only its last line (§0 item 11)."""
    by_url: dict[str, dict[int, tuple[BotCommand, str, str]]] = {}
    for command, params in matched:
        by_url.setdefault(command.handler, {})[command.id] = (command, params, "TEXTAREA")
    return [(next(iter(e.values()))[0], list(e.values())) for e in by_url.values()]


def _user_block(user: User, *, full: bool) -> dict[str, Any]:
    """`data[USER]`; ONIMCOMMANDADD's (`full=False`) has no WORK_POSITION and no IS_* (§1.5)."""
    block: dict[str, Any] = {
        "ID": user.id,
        "NAME": user.name,
        "FIRST_NAME": user.first_name,
        "LAST_NAME": user.last_name,
        "GENDER": user.gender,
    }
    if full:
        block |= {
            "WORK_POSITION": user.work_position,
            "IS_BOT": "N",
            "IS_CONNECTOR": "Y" if user.connector else "N",
            "IS_NETWORK": "Y" if user.network else "N",
            "IS_EXTRANET": "Y" if user.extranet else "N",
        }
    return block
