"""Telegram updates into IncomingCommands: the adapter translates, the core decides.

A message in an allowed group (TELEGRAM_ALLOWED_CHAT_IDS) becomes one command per command line,
as a Bitrix24 message does (bot/bitrix/events.py `split_commands`); the private chat with the
bot takes only the account commands. A chat not allowed gets nothing but a log line. Keys are
`tg:<update_id>:<n>`: an update delivered again (a restart before its offset was confirmed, a
webhook retried) stores nothing twice. A button press is keyed by its callback query id.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import structlog
from aiogram.types import CallbackQuery, InaccessibleMessage, InlineKeyboardMarkup, Message

from bot.bitrix.events import split_commands
from bot.models import ButtonNotOffered, IncomingCommand, NoAuthor, TelegramRoute
from bot.texts import pick_language

log = structlog.get_logger(__name__)

# What a private chat with the bot is for: linking the account, and help.
PRIVATE_COMMANDS: Final = frozenset({"start", "link", "unlink", "help", "помощь"})
# `/rate@SomeBot rest`: the name, the addressee, the rest.
_HEAD: Final = re.compile(r"^([\s\u200b\u2060\ufeff]*/)([^\s@]*)(?:@(\S*))?(.*)$", re.DOTALL)

# A Telegram user id -> the Bitrix24 user it is linked to (None: not linked).
LinkOf = Callable[[int], Awaitable[int | None]]


@dataclass(frozen=True)
class Chats:
    """Where commands are taken from, and who the bot is there."""

    allowed: frozenset[int]
    username: str  # the bot's own username (getMe), without "@"

    def addressed(self, text: str) -> str | None:
        """The command without its `@addressee`; None when addressed to another bot."""
        match = _HEAD.match(text)
        if match is None or match.group(3) is None:
            return text
        if match.group(3).casefold() != self.username.casefold():
            return None
        return match.group(1) + match.group(2) + match.group(4)


def commands_of_message(
    message: Message,
    *,
    update_id: int,
    chats: Chats,
    b24_user_id: int | None,
    received_at: float,
) -> list[IncomingCommand]:
    """The commands of a message from a person; [] for a chat not allowed or no command."""
    user = message.from_user
    if user is None:  # the caller answers channel posts and posts as a chat
        return []
    private = message.chat.type == "private"
    if not private and message.chat.id not in chats.allowed:
        log.info("telegram.chat_not_allowed", chat_id=message.chat.id, user_id=user.id)
        return []
    route = _route_of(message)
    texts = [t for t in map(chats.addressed, split_commands(message.text or "")) if t]
    if private:
        texts = [t for t in texts if command_name(t) in PRIVATE_COMMANDS]
    return [
        IncomingCommand(
            key=f"tg:{update_id}:{n}",
            source="telegram",
            author_id=user.id,
            b24_user_id=b24_user_id,
            author_kind="unverified",
            text=text,
            language=pick_language(user.language_code),
            received_at=received_at,
            route=route,
        )
        for n, text in enumerate(texts)
    ]


def command_of_click(
    query: CallbackQuery, *, chats: Chats, b24_user_id: int | None, received_at: float
) -> IncomingCommand | None:
    """A press on the star keyboard: the command its button carries, as the presser's; a
    press no button of its message offers, a notice saying so; None in a chat not allowed."""
    message = query.message
    if message is None or not query.data or not query.data.startswith("/"):
        return None
    chat = message.chat
    if chat.type != "private" and chat.id not in chats.allowed:
        log.info("telegram.chat_not_allowed", chat_id=chat.id, user_id=query.from_user.id)
        return None
    # A modified client sends any data on any of the bot's messages: a press counts only with
    # data one of that message's buttons carries (else it would rate what no button offered,
    # and edit a message that was no prompt), and only where such a command may be typed.
    press = IncomingCommand(
        key=f"tg:cb:{query.id}",  # one job per click, however often it is delivered
        source="telegram",
        author_id=query.from_user.id,
        b24_user_id=b24_user_id,
        author_kind="unverified",
        text=query.data,
        language=pick_language(query.from_user.language_code),
        received_at=received_at,
        route=TelegramRoute(
            chat_id=chat.id,
            callback_query_id=query.id,
            keyboard_message_id=message.message_id,
        ),
    )
    if _offered(message, query.data) and (
        chat.type != "private" or command_name(query.data) in PRIVATE_COMMANDS
    ):
        return press
    # Refused: the presser is told so (the button stops spinning), and nothing is edited.
    log.info("telegram.click_refused", chat_id=chat.id, user_id=query.from_user.id)
    route = TelegramRoute(chat_id=chat.id, callback_query_id=query.id)
    return press.model_copy(update={"text": "", "notice": ButtonNotOffered(), "route": route})


def notice_of_post(
    message: Message, *, update_id: int, chats: Chats, received_at: float
) -> IncomingCommand | None:
    """A command posted with no person behind it (a channel post, or a member posting as the
    group): nobody can be authorised, so the chat is told a group is needed, once per post
    (keyed by the update: a redelivery says nothing twice). None for a post with no command
    of ours, or in a chat not allowed (a channel included), which gets a log line only."""
    if not [t for t in map(chats.addressed, split_commands(message.text or "")) if t]:
        return None
    if message.chat.id not in chats.allowed:
        log.info("telegram.chat_not_allowed", chat_id=message.chat.id, user_id=None)
        return None
    log.info("telegram.no_author", chat_id=message.chat.id, chat_type=message.chat.type)
    return IncomingCommand(
        key=f"tg:{update_id}:0",
        source="telegram",
        author_id=(message.sender_chat or message.chat).id,  # its share of the queue
        author_kind="unverified",
        text="",
        notice=NoAuthor(),
        language="en" if _english(message.text or "") else "ru",
        received_at=received_at,
        route=_route_of(message),
    )


def _english(text: str) -> bool:
    """A post has no sender's language: it is guessed from its text."""
    return not any("а" <= char.casefold() <= "я" for char in text)


def _route_of(message: Message) -> TelegramRoute:
    """The answer to a message: in its chat (and forum topic), replying to it."""
    return TelegramRoute(
        chat_id=message.chat.id,
        message_id=message.message_id,
        thread_id=message.message_thread_id if message.is_topic_message else None,
    )


def _offered(message: Message | InaccessibleMessage, data: str) -> bool:
    """Whether one of the message's buttons carries `data`. A message the Bot API no longer
    shows (InaccessibleMessage, older than 48 hours) has no keyboard to check: refused."""
    markup = message.reply_markup if isinstance(message, Message) else None
    if not isinstance(markup, InlineKeyboardMarkup):
        return False
    return any(b.callback_data == data for row in markup.inline_keyboard for b in row)


def command_name(text: str) -> str:
    match = _HEAD.match(text)
    return match.group(2).casefold() if match else ""
