"""Telegram updates into IncomingCommands: the adapter translates, the core decides.

A message in an allowed group (TELEGRAM_ALLOWED_CHAT_IDS) becomes one command per command line,
as a Bitrix24 message does (bot/bitrix/events.py `split_commands`); the private chat with the
bot takes only the account commands. A chat not allowed gets nothing but a log line.

What a person typed and sent is a command; what they only passed on is not (`_passed_on`):
- a photo's caption is typed by its sender: `/rate 494 5` as a screenshot's caption counts;
- a forward shows someone else's message (perhaps from another chat, hours old): running it
  would vote in the forwarder's name what they did not write;
- a message sent through an inline bot (`via_bot`) holds what that bot chose: its preview can
  show anything while the text says `/rate 494 1`;
- a bot is nobody's supervisor, and answering one could start two bots answering each other;
- a reply counts by its own text alone: a quote or the replied message is someone else's;
- edits are not asked for (the router has no edited_message handler, so aiogram leaves the
  type out of allowed_updates): the answer under a command says what that command did, and a
  change is a new command; an edit never votes twice or changes a vote unseen.
Keys are
`tg:<update_id>:<n>`: an update delivered again (a restart before its offset was confirmed, a
webhook retried) stores nothing twice. A button press is keyed by its callback query id.
"""

from __future__ import annotations

import re
import unicodedata
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
# `/rate @SomeBot rest`: a bot mentioned right after the command names its addressee too
# (a bot's username ends in "bot", Bot API); a person mentioned there is left to the parser.
_MENTIONED_BOT: Final = re.compile(r"^[^\S\n]+@(\w*bot)(?=\s|$)(.*)$", re.DOTALL | re.IGNORECASE)

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
        if match is None:
            return text
        addressee, rest = match.group(3), match.group(4)
        if addressee is None and (mention := _MENTIONED_BOT.match(rest)):
            addressee, rest = mention.groups()
        if addressee is None:
            return text
        if addressee.casefold() != self.username.casefold():
            return None
        return match.group(1) + match.group(2) + rest


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
    texts = [t for t in map(chats.addressed, split_commands(typed_text(message))) if t]
    if private:
        texts = [t for t in texts if _visible_name(t) in PRIVATE_COMMANDS]
    if texts and (passed_on := _passed_on(message)):
        log.info(
            "telegram.not_a_command", reason=passed_on, chat_id=message.chat.id, user_id=user.id
        )
        return []
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


def _passed_on(message: Message) -> str | None:
    """Why a message's text is not its sender's command (see the module's notes), or None."""
    if message.forward_origin is not None:
        return "forwarded"
    if message.via_bot is not None:
        return "via_bot"
    if message.from_user is not None and message.from_user.is_bot:
        return "from_bot"
    return None


def migration_hint(message: Message, allowed: frozenset[int]) -> None:
    """A basic group became a supergroup (its service message `migrate_to_chat_id`): its id
    changed, and the bot stops answering there until the new id is allowed. Said once, in a
    log line the operator can act on."""
    old, new = message.chat.id, message.migrate_to_chat_id
    if new is None:
        return
    if old not in allowed:
        log.info("telegram.chat_migrated", old_chat_id=old, new_chat_id=new)
        return
    setting = ",".join(str(new if chat == old else chat) for chat in sorted(allowed))
    log.warning(
        "telegram.chat_migrated",
        old_chat_id=old,
        new_chat_id=new,
        action="allow the new id and restart",
        TELEGRAM_ALLOWED_CHAT_IDS=setting,
    )


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
    typed = typed_text(message)
    if not [t for t in map(chats.addressed, split_commands(typed)) if t]:
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
        language="en" if _english(typed) else "ru",
        received_at=received_at,
        route=_route_of(message),
    )


def typed_text(message: Message) -> str:
    """What the sender typed: the text, or a photo's (or file's) caption."""
    typed = message.text if message.text is not None else message.caption
    return typed or ""


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


def _visible_name(text: str) -> str:
    """The command's name as it reads: `/li\u200bnk` and `/start\u2066` are the account
    commands they look like, so the parser can say what hides in them."""
    match = _HEAD.match(text.split(maxsplit=1)[0] if text.strip() else text)
    name = match.group(2) if match else ""
    return "".join(c for c in name if unicodedata.category(c) != "Cf").casefold()


def command_name(text: str) -> str:
    match = _HEAD.match(text)
    return match.group(2).casefold() if match else ""
