"""The fake Telegram's state: the bot, users, chats, messages, the update queue, faults.

Plain data and the ways people act in it (`type`, `press`, `post_in_channel`, `remove_bot`),
each producing the `Update` Telegram would send; `methods.py` serves the Bot API over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from bot.sandbox.faults import spend
from bot.sandbox.telegram.entities import user_entities

# getUpdates' and setWebhook's default: every type but these (Bot API, getUpdates).
NOT_BY_DEFAULT: Final = frozenset({"chat_member", "message_reaction", "message_reaction_count"})


# ChatMemberAdministrator's required rights (a channel's bot is an administrator).
_RIGHTS: Final = (
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
    "can_send_welcome_messages",
    "can_post_messages",
    "can_edit_messages",
)


# The fake sender Telegram puts in `from` of a message sent on behalf of a group (an anonymous
# administrator), beside `sender_chat` (Bot API, Message.from). [UNCONFIRMED] the id, as
# widely reported for @GroupAnonymousBot.
GROUP_ANONYMOUS_BOT: Final = {
    "id": 1_087_968_824,
    "is_bot": True,
    "first_name": "Group",
    "username": "GroupAnonymousBot",
}


class WorldError(ValueError):
    """Something a person cannot do in this world (a stranger writing in a chat, a button
    that is not there): a mistake in the test, answered 400 by the HTTP endpoints."""


@dataclass
class TgUser:
    id: int
    first_name: str
    last_name: str = ""
    username: str = ""
    is_bot: bool = False
    language_code: str = "ru"

    def as_api(self) -> dict[str, Any]:
        user: dict[str, Any] = {
            "id": self.id,
            "is_bot": self.is_bot,
            "first_name": self.first_name,
        }
        if self.last_name:
            user["last_name"] = self.last_name
        if self.username:
            user["username"] = self.username
        if not self.is_bot and self.language_code:
            user["language_code"] = self.language_code
        return user


@dataclass
class TgChat:
    """A chat. `bot_status` is the bot's membership: "member", "administrator" (channels:
    a bot must be an administrator to see posts), "left" or "kicked"."""

    id: int
    type: str  # private, group, supergroup, channel
    title: str = ""
    username: str = ""
    members: set[int] = field(default_factory=set)
    bot_status: str = "member"
    is_forum: bool = False
    topics: dict[int, str] = field(default_factory=dict)  # message_thread_id -> name
    first_name: str = ""  # private chats: the user's names
    last_name: str = ""
    # Basic groups and private chats share the bot's one message-id sequence; supergroups
    # and channels number their own messages (see `TelegramWorld.next_message_id`).
    _ids: Callable[[], int] = field(default_factory=lambda: itertools.count(1).__next__)

    def as_api(self) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": self.id, "type": self.type}
        for name in ("title", "username", "first_name", "last_name"):
            if getattr(self, name):
                chat[name] = getattr(self, name)
        if self.is_forum:
            chat["is_forum"] = True
        return chat

    @property
    def has_bot(self) -> bool:
        return self.bot_status in ("member", "administrator")


@dataclass
class TgMessage:
    """A message as stored: `text` and `entities` are the parsed result (markup gone)."""

    chat_id: int
    message_id: int
    date: int
    text: str
    sender_id: int | None  # None: a channel post
    entities: list[dict[str, Any]] = field(default_factory=list)
    reply_markup: dict[str, Any] | None = None
    reply_to: int | None = None
    thread_id: int | None = None
    edit_date: int | None = None
    link_preview_options: dict[str, Any] | None = None
    parse_mode: str | None = None  # as the bot sent it, for inspection
    as_chat: bool = False  # a person posting on behalf of the group (anonymous administrator)
    caption: bool = False  # `text` is a photo's caption (`caption`, `caption_entities`)
    forward_from: int | None = None  # a forward: the user who wrote the original
    via_bot: int | None = None  # sent through an inline bot (`@somebot query`)
    quote: str | None = None  # the part of the replied message quoted
    service: dict[str, Any] | None = None  # a service message's fields (no text)

    def buttons(self) -> Iterator[dict[str, Any]]:
        for row in (self.reply_markup or {}).get("inline_keyboard", []):
            yield from row


@dataclass
class TgFault:
    """An injected failure for calls of `method` ("*" any; case-insensitive), `times` times
    (-1: always). `status` 429 adds `parameters.retry_after`; `body` answers raw text (a
    proxy's HTML page); `after`: the method runs first and its answer is lost."""

    method: str = "*"
    times: int = 1
    status: int = 500
    description: str = ""
    retry_after: int | None = None
    body: str | None = None
    delay: float = 0.0
    hang: bool = False
    after: bool = False


@dataclass
class TgCall:
    method: str
    params: dict[str, Any]
    status: int
    description: str | None = None


@dataclass
class Webhook:
    url: str = ""
    secret_token: str = ""
    max_connections: int = 40
    last_error_date: int | None = None
    last_error_message: str | None = None


class TelegramWorld:
    """One bot (its token, its user) and the people and chats around it."""

    def __init__(self, bot: TgUser, token: str, *, privacy: bool = True) -> None:
        self.bot = bot
        self.token = token
        # Group privacy mode (BotFather /setprivacy, on by default): in groups the bot hears
        # commands, replies to its messages and service messages, not the chatter (see
        # `_hears`).
        self.privacy = privacy
        self.users: dict[int, TgUser] = {bot.id: bot}
        self.chats: dict[int, TgChat] = {}
        self.messages: dict[tuple[int, int], TgMessage] = {}
        self.updates: list[dict[str, Any]] = []  # pending: not confirmed, not delivered
        self.delivered: list[dict[str, Any]] = []  # confirmed or delivered, for inspection
        self.allowed_updates: frozenset[str] | None = None  # None: the default set
        self.webhook = Webhook()
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (scope, lang)
        self.callback_queries: dict[str, dict[str, Any]] = {}  # id -> the query and answer
        self.calls: list[TgCall] = []
        self.faults: list[TgFault] = []
        self._update_ids = itertools.count(800_000_001)
        self._box_ids = itertools.count(1)  # the bot's own message box (private, group)
        self._changed = asyncio.Event()
        self.closed = False
        self.polls_waiting = 0  # getUpdates calls waiting for an update (long polling)

    # -- the world's furniture -------------------------------------------------------------

    def add_user(self, user: TgUser) -> TgUser:
        self.users[user.id] = user
        return user

    def add_chat(self, chat: TgChat) -> TgChat:
        self.chats[chat.id] = chat
        return chat

    def user(self, user_id: int) -> TgUser:
        if user_id not in self.users:
            raise WorldError(f"no user {user_id}")
        return self.users[user_id]

    def chat(self, chat_id: int) -> TgChat:
        if chat_id not in self.chats:
            raise WorldError(f"no chat {chat_id}")
        return self.chats[chat_id]

    def private_chat(self, user_id: int) -> TgChat:
        """The user's private chat with the bot (its id is the user's), opened on first use."""
        user = self.user(user_id)
        if user_id not in self.chats:
            self.chats[user_id] = TgChat(
                user_id,
                "private",
                username=user.username,
                first_name=user.first_name,
                last_name=user.last_name,
                members={user_id},
            )
        return self.chats[user_id]

    def next_message_id(self, chat: TgChat) -> int:
        if chat.type in ("supergroup", "channel"):
            return chat._ids()  # noqa: SLF001 - the chat's own sequence
        return next(self._box_ids)

    def now(self) -> int:
        return int(time.time())

    # -- updates ---------------------------------------------------------------------------

    def wants(self, kind: str) -> bool:
        if self.allowed_updates is None:
            return kind not in NOT_BY_DEFAULT
        return kind in self.allowed_updates

    def add_update(self, kind: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """Queue an update of `kind`; None when the bot's allowed_updates leave it out (then
        Telegram does not keep it at all)."""
        if not self.wants(kind):
            return None
        update = {"update_id": next(self._update_ids), kind: payload}
        self.updates.append(update)
        self.notify()
        return update

    def confirm_below(self, offset: int) -> None:
        self.delivered += [u for u in self.updates if u["update_id"] < offset]
        self.updates = [u for u in self.updates if u["update_id"] >= offset]

    def drop_pending(self) -> None:
        self.delivered += self.updates
        self.updates = []

    def notify(self) -> None:
        """Wake whoever waits for a change (long polls, the webhook sender)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, within: float) -> None:
        """Wait for the next change, at most `within` seconds."""
        event = self._changed
        # asyncio.timeout, not wait_for: 3.11's wait_for swallows a cancellation that arrives
        # as the event fires, and the webhook sender would then never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await event.wait()

    def close(self) -> None:
        """The server stops: every long poll answers now."""
        self.closed = True
        self.notify()

    # -- messages --------------------------------------------------------------------------

    def message(self, chat_id: int, message_id: int) -> TgMessage | None:
        return self.messages.get((chat_id, message_id))

    def messages_from_bot(self, chat_id: int | None = None) -> list[str]:
        """The texts the bot sent (in `chat_id`), oldest first, as stored (markup parsed)."""
        return [
            m.text
            for m in self.messages.values()
            if m.sender_id == self.bot.id and chat_id in (None, m.chat_id)
        ]

    def store(self, message: TgMessage) -> TgMessage:
        self.messages[(message.chat_id, message.message_id)] = message
        return message

    def message_as_api(self, message: TgMessage, *, nested: bool = False) -> dict[str, Any]:
        chat = self.chats[message.chat_id]
        out: dict[str, Any] = {"message_id": message.message_id}
        if message.sender_id is None:
            out["sender_chat"] = chat.as_api()
        elif message.as_chat:
            out |= {"from": dict(GROUP_ANONYMOUS_BOT), "sender_chat": chat.as_api()}
        else:
            out["from"] = self.users[message.sender_id].as_api()
        out |= {"chat": chat.as_api(), "date": message.date}
        if message.thread_id is not None:
            out |= {"message_thread_id": message.thread_id, "is_topic_message": True}
        if message.reply_to is not None and not nested:
            replied = self.message(message.chat_id, message.reply_to)
            if replied is not None:
                out["reply_to_message"] = self.message_as_api(replied, nested=True)
        out |= self._origin(message)
        if message.edit_date is not None:
            out["edit_date"] = message.edit_date
        if message.service is not None:
            return out | message.service
        out |= _content(message)
        if message.link_preview_options:
            out["link_preview_options"] = message.link_preview_options
        if message.reply_markup:
            out["reply_markup"] = message.reply_markup
        return out

    def _origin(self, message: TgMessage) -> dict[str, Any]:
        """Where a message's text came from besides its sender: a quote, a forward, a bot."""
        out: dict[str, Any] = {}
        if message.quote is not None:
            out["quote"] = {"text": message.quote, "position": 0}
        if message.forward_from is not None:
            out["forward_origin"] = {
                "type": "user",
                "date": message.date,
                "sender_user": self.users[message.forward_from].as_api(),
            }
        if message.via_bot is not None:
            out["via_bot"] = self.users[message.via_bot].as_api()
        return out

    # -- people acting ---------------------------------------------------------------------

    def type(
        self,
        user_id: int,
        chat_id: int,
        text: str,
        *,
        reply_to: int | None = None,
        thread_id: int | None = None,
        as_chat: bool = False,
        **kinds: Any,
    ) -> dict[str, Any] | None:
        """`user_id` writes `text` in `chat_id` (their own id: the private chat with the bot);
        `as_chat`: on behalf of the group, as its anonymous administrator (supergroups only).
        `kinds` are TgMessage's: `caption=True` (a photo with `text` as its caption),
        `forward_from=<user id>`, `via_bot=<bot id>`, `quote=<part of the replied message>`.
        Returns the update the bot gets, or None when it hears nothing (privacy mode, a chat
        it is not in, an update type it did not ask for)."""
        chat = self.private_chat(user_id) if chat_id == user_id else self.chat(chat_id)
        if chat.type == "channel":
            raise WorldError("people post in channels with post_in_channel")
        if user_id not in chat.members:
            raise WorldError(f"user {user_id} is not a member of chat {chat_id}")
        if thread_id is not None and thread_id not in chat.topics:
            raise WorldError(f"chat {chat_id} has no topic {thread_id}")
        if reply_to is not None and self.message(chat.id, reply_to) is None:
            raise WorldError(f"no message {reply_to} in chat {chat_id}")
        if as_chat and chat.type != "supergroup":
            raise WorldError("only a supergroup's anonymous administrators post as the chat")
        message = self.store(
            TgMessage(
                chat.id,
                self.next_message_id(chat),
                self.now(),
                text,
                user_id,
                entities=user_entities(text),
                reply_to=reply_to,
                thread_id=thread_id,
                as_chat=as_chat,
                **kinds,
            )
        )
        if not chat.has_bot or not self._hears(chat, message):
            return None
        return self.add_update("message", self.message_as_api(message))

    def edit(self, chat_id: int, message_id: int, text: str) -> dict[str, Any] | None:
        """The author edits their message: an `edited_message` update, if the bot asked for
        that type and hears the new text."""
        message = self.message(chat_id, message_id)
        if message is None:
            raise WorldError(f"no message {message_id} in chat {chat_id}")
        message.text, message.entities = text, user_entities(text)
        message.edit_date = self.now()
        if not self.chat(chat_id).has_bot or not self._hears(self.chat(chat_id), message):
            return None
        return self.add_update("edited_message", self.message_as_api(message))

    def migrate(self, chat_id: int, to_chat_id: int, by_user_id: int) -> list[dict[str, Any]]:
        """A basic group becomes a supergroup with a new id (an administrator turns on a
        supergroup-only setting): the old chat's service message `migrate_to_chat_id`, then
        the new chat's `migrate_from_chat_id`; the old chat is gone for the bot."""
        old = self.chat(chat_id)
        if old.type != "group":
            raise WorldError(f"chat {chat_id} is no basic group")
        new = self.add_chat(TgChat(to_chat_id, "supergroup", old.title, members=set(old.members)))
        new.bot_status, old.bot_status = old.bot_status, "kicked"
        updates = []
        for chat, field_ in (
            (old, {"migrate_to_chat_id": to_chat_id}),
            (new, {"migrate_from_chat_id": chat_id}),
        ):
            message = self.store(
                TgMessage(
                    chat.id, self.next_message_id(chat), self.now(), "", by_user_id, service=field_
                )
            )
            updates.append(self.add_update("message", self.message_as_api(message)))
        return [u for u in updates if u is not None]

    def _hears(self, chat: TgChat, message: TgMessage) -> bool:
        """Privacy mode (core.telegram.org/bots/features#privacy-mode): in a group the bot
        gets commands, replies to its own messages and everything in private chats; an
        administrator bot or one with privacy off gets all. Telegram narrows a bare `/cmd` to
        the last bot that wrote when several bots are in a group; this world has one bot."""
        if chat.type == "private" or not self.privacy or chat.bot_status == "administrator":
            return True
        if message.service is not None:
            return True
        if any(e["type"] == "bot_command" for e in message.entities):
            return True
        replied = self.message(chat.id, message.reply_to) if message.reply_to else None
        return replied is not None and replied.sender_id == self.bot.id

    def press(
        self,
        user_id: int,
        chat_id: int,
        message_id: int,
        callback_data: str,
        *,
        forged: bool = False,
    ) -> dict[str, Any] | None:
        """`user_id` presses the inline button carrying `callback_data` under a message;
        `forged`: a modified client sends any data, whatever the message's buttons."""
        chat = self.chat(chat_id)
        message = self.message(chat_id, message_id)
        if message is None:
            raise WorldError(f"no message {message_id} in chat {chat_id}")
        carried = any(b.get("callback_data") == callback_data for b in message.buttons())
        if not carried and not forged:
            raise WorldError(f"message {message_id} has no button {callback_data!r}")
        if chat.type != "private" and user_id not in chat.members:
            raise WorldError(f"user {user_id} is not a member of chat {chat_id}")
        query_id = str(secrets.randbits(63))
        query = {
            "id": query_id,
            "from": self.user(user_id).as_api(),
            "message": self.message_as_api(message),
            "chat_instance": str(abs(hash((self.bot.id, chat_id)))),
            "data": callback_data,
        }
        self.callback_queries[query_id] = {"query": query, "answer": None}
        return self.add_update("callback_query", query)

    def post_in_channel(self, chat_id: int, text: str) -> dict[str, Any] | None:
        """An administrator posts `text` in a channel: a `channel_post` without `from`."""
        chat = self.chat(chat_id)
        if chat.type != "channel":
            raise WorldError(f"chat {chat_id} is not a channel")
        message = self.store(
            TgMessage(
                chat.id,
                self.next_message_id(chat),
                self.now(),
                text,
                None,
                entities=user_entities(text),
            )
        )
        if not chat.has_bot:
            return None
        return self.add_update("channel_post", self.message_as_api(message))

    def remove_bot(self, chat_id: int, by_user_id: int | None = None) -> dict[str, Any] | None:
        """Someone removes the bot from a chat (or, in a private chat, the user blocks it):
        a `my_chat_member` update, and from now on 403 for what the bot sends there."""
        chat = self.chat(chat_id)
        old = chat.bot_status
        new = "left" if chat.type == "group" else "kicked"
        chat.bot_status = new
        return self._member_update(chat, old, new, by_user_id)

    def add_bot(self, chat_id: int, by_user_id: int | None = None) -> dict[str, Any] | None:
        """The bot is added (back) to a group or unblocked: `my_chat_member`."""
        chat = self.chat(chat_id)
        old, chat.bot_status = chat.bot_status, "member"
        return self._member_update(chat, old, "member", by_user_id)

    def _member_update(
        self, chat: TgChat, old: str, new: str, by_user_id: int | None
    ) -> dict[str, Any] | None:
        actor = by_user_id if by_user_id is not None else min(chat.members, default=None)
        if actor is None:
            raise WorldError(f"chat {chat.id} has no members: say who does it (by_user_id)")
        return self.add_update(
            "my_chat_member",
            {
                "chat": chat.as_api(),
                "from": self.user(actor).as_api(),
                "date": self.now(),
                "old_chat_member": _member(self.bot, old),
                "new_chat_member": _member(self.bot, new),
            },
        )

    def take_fault(self, method: str) -> TgFault | None:
        for fault in self.faults:
            if fault.method.lower() in (method, "*"):
                return spend(self.faults, fault)
        return None


def _content(message: TgMessage) -> dict[str, Any]:
    """A message's text, or a photo with the text as its caption."""
    if not message.caption:
        return {"text": message.text} | (
            {"entities": message.entities} if message.entities else {}
        )
    photo = {"file_id": "ph0t0", "file_unique_id": "ph0t0", "width": 1, "height": 1}
    content: dict[str, Any] = {"photo": [photo], "caption": message.text}
    return content | ({"caption_entities": message.entities} if message.entities else {})


def _member(bot: TgUser, status: str) -> dict[str, Any]:
    member: dict[str, Any] = {"status": status, "user": bot.as_api()}
    if status == "kicked":
        member["until_date"] = 0
    if status == "administrator":
        member |= {"can_be_edited": False, "is_anonymous": False} | dict.fromkeys(_RIGHTS, True)
    return member
