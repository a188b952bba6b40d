"""Chatbots 2.0 events fetched with `imbot.v2.Event.get` -> typed models -> IncomingCommands.

The fetch-mode twin of bot/bitrix/events.py (protocol notes §00 item 9, §1.11; the docs'
`chat-bots-v2/imbot.v2/events/events.md` and `event-get.md`). A fetched event is
`{eventId, type, date, data}`, JSON-typed and camelCase, with no `auth` anywhere. It is checked
at the boundary like a v1 event (ids ASCII digits below 2^31, strings bounded) and becomes
commands by the same rules as v1: the author's kind, open lines, the chat's session, the
route, the language, keyboard clicks, no welcome in an open line.

What differs from v1, and why:
- ONIMBOTV2COMMANDADD comes once per command occurrence ("If a single message contains
  multiple slash commands, an event is generated separately for each command", events.md),
  so one event is exactly one command: a message with three `/rate` lines is three events and
  three votes, never six. The message text is read only to find this command's own comment
  lines (v1 takes a comment up to the next command line; `params` is one line, §0 item 9).
- ONIMBOTV2MESSAGEADD comes only for a message that matched no command (§0 item 14
  [UNCONFIRMED for v2]): a `/rate` typed before the command was registered, `/Rate` in a
  private chat (§00 item 5). Its command lines are split from the text exactly as v1 does:
  no command event carries them, so nothing runs twice.
- The de-dup keys hold what a re-fetch of the same event reproduces: the message id, the
  command id and the event id (an unacknowledged event keeps its id in the queue).
- The user object tells staff from extranet users, so a command's author is verified here,
  unlike v1's ONIMCOMMANDADD (§1.5).

`admit_fetched` is what the poller calls with one fetched page: it hands the commands of each
message to `bot.intake.admit` together, as the webhook adapter does for one v1 event.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Final, Literal

import structlog
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, ValidationError

from bot.bitrix.events import (
    Data,
    DialogId,
    Flag,
    Id,
    IdOrZero,
    Name,
    Text,
    is_line_customer,
    session_of_entity_data,
    split_commands,
)
from bot.commands import COMMAND_NAMES
from bot.errors import BotError
from bot.intake import admit
from bot.models import AuthorKind, BitrixRoute, IncomingCommand
from bot.texts import pick_language

log = structlog.get_logger(__name__)

# The queue's own ids: not a 32-bit column we know of, so bounded only to what JSON and
# SQLite hold exactly [UNCONFIRMED: the width of Bitrix24's event id].
MAX_EVENT_ID: Final = 2**53 - 1
# How many messages' admitted keys the poller remembers: far more than a few pages hold.
TALLY_MESSAGES: Final = 10_000
_EVENT_ID = re.compile(r"[0-9]{1,16}")
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_]{1,64}")
_LEADING_BLANKS = "\t\n\r\f\v \u200b\u2060\ufeff"
# Guests, not this portal's staff: `type` (entities.md, User) and `externalAuthId` `replica`,
# a Bitrix24.Network account [UNCONFIRMED], like v1's IS_NETWORK.
_GUEST_TYPES: Final = frozenset({"extranet", "collaber", "email"})
_GUEST_AUTH: Final = frozenset({"replica", "email"})


def _event_id(value: object) -> int:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _EVENT_ID.fullmatch(text) or int(text) > MAX_EVENT_ID:
        raise ValueError("an event id is ASCII digits below 2^53")
    return int(text)


EventId = Annotated[int, BeforeValidator(_event_id), Field(ge=1)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")  # fields camelCase by alias


class BotRef(_Model):
    id: Id


class User(_Model):
    """`data.user`: the author (entities.md, User). A missing `extranet` leaves them
    unverified, as in v1."""

    id: Id
    bot: StrictBool = False
    connector: StrictBool = False
    extranet: StrictBool | None = None
    type: Name = ""
    external_auth_id: Name = Field("", alias="externalAuthId")


class Chat(_Model):
    """`data.chat`: no `role` in events (events.md), so a bot's membership is not told."""

    id: Id
    dialog_id: DialogId = Field(alias="dialogId")
    type: Name = ""
    message_type: Flag = Field("", alias="messageType")
    entity_type: Name = Field("", alias="entityType")
    entity_id: Data = Field("", alias="entityId")
    entity_data_1: Data = Field("", alias="entityData1")


class Message(_Model):
    id: Id
    author_id: IdOrZero = Field(0, alias="authorId")  # 0 for a system message (entities.md)
    text: Text = ""
    is_system: StrictBool = Field(default=False, alias="isSystem")


class CommandBlock(_Model):
    """`data.command`: `{id, command: "/help", params, context}` (events.md)."""

    id: Id
    command: Name
    params: Text = ""
    context: Flag = "textarea"  # textarea, keyboard or menu


class MessageData(_Model):
    bot: BotRef
    message: Message
    chat: Chat
    user: User
    language: Flag = ""


class CommandData(MessageData):
    command: CommandBlock


class JoinData(_Model):
    bot: BotRef
    dialog_id: DialogId = Field(alias="dialogId")
    chat: Chat
    user: User
    language: Flag = ""


class DeleteData(_Model):
    bot: BotRef


class _Event(_Model):
    event_id: EventId = Field(alias="eventId")
    date: Annotated[str, Field(max_length=40)] = ""


class CommandEvent(_Event):
    type: Literal["ONIMBOTV2COMMANDADD"]
    data: CommandData


class MessageEvent(_Event):
    type: Literal["ONIMBOTV2MESSAGEADD"]
    data: MessageData


class JoinEvent(_Event):
    type: Literal["ONIMBOTV2JOINCHAT"]
    data: JoinData


class DeleteEvent(_Event):
    type: Literal["ONIMBOTV2DELETE"]
    data: DeleteData


Event = CommandEvent | MessageEvent | JoinEvent | DeleteEvent
EVENT_TYPES: dict[str, type[Event]] = {
    "ONIMBOTV2COMMANDADD": CommandEvent,
    "ONIMBOTV2MESSAGEADD": MessageEvent,
    "ONIMBOTV2JOINCHAT": JoinEvent,
    "ONIMBOTV2DELETE": DeleteEvent,
}


class MalformedFetchedEvent(BotError):
    """A fetched event that is no event, or a known one with a malformed body."""

    def __init__(self, reason: str, errors: int = 0) -> None:
        super().__init__(reason)
        self.reason, self.errors = reason, errors


def parse_fetched(raw: object) -> Event | None:
    """The typed event, or None for a well-formed event this bot does not handle
    (MESSAGEUPDATE, MESSAGEDELETE, REACTIONCHANGE, CONTEXTGET, anything newer).

    Raises MalformedFetchedEvent, and nothing else, for anything else.
    """
    name = raw.get("type") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or not isinstance(name, str) or not _EVENT_TYPE.fullmatch(name):
        raise MalformedFetchedEvent("no_event")
    model = EVENT_TYPES.get(name.upper())
    if model is None:
        return None
    try:
        return model.model_validate({**raw, "type": name.upper()})
    except ValidationError as error:
        raise MalformedFetchedEvent("malformed_event", error.error_count()) from None


def is_openline(chat: Chat) -> bool:
    """An open line's operator chat: any one mark suffices (§1.7, §1.8). [UNCONFIRMED: the
    v2 `type` name of such a chat; entities.md does not list it.]"""
    return chat.entity_type == "LINES" or chat.message_type == "L" or chat.type == "lines"


def author_kind(data: MessageData) -> AuthorKind:
    """The same kinds as v1 (bot/bitrix/events.py `author_kind`), from the user object."""
    user, chat = data.user, data.chat
    if user.connector or (is_openline(chat) and is_line_customer(chat.entity_id, user.id)):
        return "customer"
    if user.extranet or user.type in _GUEST_TYPES or user.external_auth_id in _GUEST_AUTH:
        return "extranet"
    return "unverified" if user.extranet is None else "staff"


def _route(event: CommandEvent | MessageEvent) -> BitrixRoute:
    data = event.data
    private = data.chat.dialog_id == str(data.user.id)
    return BitrixRoute(
        dialog_id=data.chat.dialog_id,
        author_dialog_id=str(data.user.id),
        message_id=data.message.id,
        # A message event comes only from a chat the bot is in (events.md); a common command
        # comes from any chat, and a v2 event does not say whether the bot is a member
        # [UNCONFIRMED]: a late answer then goes to the author's private chat.
        bot_in_chat=private or isinstance(event, MessageEvent),
        openline=is_openline(data.chat),
        api="v2",
        queued_at=queued_at(event.date),
    )


def queued_at(date: str) -> float | None:
    """The event's `date` (ISO 8601 with an offset, event-get.md) as a timestamp; None when
    it is missing or unreadable, or names no time zone (then no moment is known)."""
    try:
        moment = datetime.fromisoformat(date)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def _command_text(event: CommandEvent, name: str) -> str:
    """This occurrence's command text with its comment lines, as v1 reads them: the message's
    command block whose first line is this command's line; the event's own line otherwise."""
    line = f"/{name} {event.data.command.params}".rstrip()
    return _blocks_by_line(event.data.message.text).get(line, line)


@lru_cache(maxsize=8)
def _blocks_by_line(text: str) -> dict[str, str]:
    """A message's command blocks by their first line (the first block of each). Cached:
    every one of a message's command events carries its whole text, and splitting it once
    per event made a page of a 3,300-line message's events cost a second of CPU."""
    blocks: dict[str, str] = {}
    for block in split_commands(text):
        blocks.setdefault(block.split("\n", 1)[0].lstrip(_LEADING_BLANKS).rstrip(), block)
    return blocks


def commands_of(event: CommandEvent | MessageEvent, received_at: float) -> list[IncomingCommand]:
    """One command per command event; a message event's command lines as v1 splits them."""
    data = event.data
    if data.message.is_system or data.user.bot:
        return []
    if data.chat.entity_type == "LIVECHAT":  # the customer's side of an open line (§0 item 12)
        return []
    route = _route(event)
    texts: list[tuple[str, str]] = []  # (key, text)
    if isinstance(event, CommandEvent):
        block = event.data.command
        name = block.command.removeprefix("/")
        route = route.model_copy(update={"command_id": block.id})
        if block.context != "textarea":  # a keyboard button or menu item
            texts.append((click_key(event), f"/{name} {block.params}"))
            if block.context == "keyboard":
                # The keyboard is the bot's own message in this chat: the bot is (or was) in it.
                update = {"keyboard_message_id": data.message.id, "bot_in_chat": True}
                route = route.model_copy(update=update)
        elif name.casefold() in COMMAND_NAMES:
            key = f"{message_key(event)}:c{block.id}:e{event.event_id}"
            texts.append((key, _command_text(event, name)))
    else:
        found = split_commands(data.message.text)
        if not found and not route.openline:
            found = [data.message.text]  # written to the bot: a hint, as in v1
        texts = [(f"{message_key(event)}:{i}", text) for i, text in enumerate(found)]
    kind = author_kind(data)
    return [
        IncomingCommand(
            key=key,
            source="bitrix",
            author_id=data.user.id,
            author_kind=kind,
            text=text,
            chat_session_id=(
                session_of_entity_data(data.chat.entity_data_1) if route.openline else None
            ),
            language=pick_language(data.language),
            received_at=received_at,
            route=route,
        )
        for key, text in texts
    ]


def message_key(event: CommandEvent | MessageEvent) -> str:
    """The prefix of every key of one message's commands; v1's form, so one message keeps
    its keys whichever API delivered it."""
    return f"b24:{event.data.message.id}"


def click_key(event: CommandEvent) -> str:
    """A click, keyed as v1 keys it (bot/bitrix/events.py `click_key`): the keyboard's
    message, the user, when (the event's `date`, to the second), the button. A re-fetch keeps
    the date; a double-click within one second counts once."""
    data = event.data
    when = event.date or f"e{event.event_id}"
    return (
        f"b24:click:{data.message.id}:{data.user.id}:{when}:"
        f"{data.command.command.removeprefix('/')}:{data.command.params}"
    )


def welcome_of(event: JoinEvent, received_at: float) -> IncomingCommand | None:
    """The welcome (`/start`); none in an open line (§00 item 7), none for a bot's join."""
    data = event.data
    if is_openline(data.chat) or data.user.bot:
        return None
    return IncomingCommand(
        key=f"b24:join:{data.dialog_id}:e{event.event_id}",
        source="bitrix",
        author_id=data.user.id,
        text="/start",
        language=pick_language(data.language),
        received_at=received_at,
        route=BitrixRoute(dialog_id=data.dialog_id, author_dialog_id=str(data.user.id)),
    )


class MessageTally:
    """The job keys admitted so far per message, for the messages of the last pages: one
    message's command events may straddle pages, and its bounds are the message's (intake).
    Only what was stored is recorded, so a page fetched again is admitted as before."""

    def __init__(self, messages: int = TALLY_MESSAGES) -> None:
        self._messages = messages
        self._keys: OrderedDict[str, frozenset[str]] = OrderedDict()

    def keys_of(self, message: str) -> frozenset[str]:
        return self._keys.get(message, frozenset())

    def record(self, admitted: dict[str, list[str]]) -> None:
        for message, keys in admitted.items():
            self._keys[message] = self.keys_of(message).union(keys)
            self._keys.move_to_end(message)
        while len(self._keys) > self._messages:
            self._keys.popitem(last=False)


@dataclass
class FetchedPage:
    """What one page of fetched events comes to: the jobs to store, and what else it held.

    The jobs stay grouped by message (a click, a welcome: a group of its own), because
    `Storage.enqueue` refuses per call: one user over their share loses their message's jobs,
    not everyone's."""

    groups: list[list[IncomingCommand]] = field(default_factory=list)
    admitted: dict[str, list[str]] = field(default_factory=dict)  # message -> its new job keys
    deleted_bots: list[int] = field(default_factory=list)  # ONIMBOTV2DELETE: the bot is gone
    ignored: int = 0  # well-formed events this bot does not handle
    malformed: int = 0  # events that failed the checks: skipped, never retried

    @property
    def commands(self) -> list[IncomingCommand]:
        """Every job of the page, in order."""
        return [command for group in self.groups for command in group]


def _group_of(event: CommandEvent | MessageEvent) -> str:
    """Commands admitted together: one message's, one click's alone."""
    if isinstance(event, CommandEvent) and event.data.command.context != "textarea":
        return click_key(event)
    return message_key(event)


def admit_fetched(
    events: Sequence[Any],
    *,
    received_at: float,
    may_rate: Callable[[int], bool],
    tally: MessageTally | None = None,
) -> FetchedPage:
    """The jobs for one fetched page, ready for `Storage.enqueue`, each key once.

    The commands of one message (its several command events, or one message event) pass
    `bot.intake.admit` together, as v1's one event does: a customer gets nothing, someone who
    may not rate one reply, a supervisor at most MAX_COMMANDS_PER_MESSAGE commands. A message
    whose command events straddle pages is bounded as one message through `tally`, which
    holds what earlier pages admitted (the caller records `admitted` once the page is stored).
    """
    page = FetchedPage()
    groups: dict[str, list[IncomingCommand]] = {}  # in the order of their first event
    welcomes: set[str] = set()  # groups of one welcome each: not a message anyone wrote
    for raw in events:
        try:
            event = parse_fetched(raw)
        except MalformedFetchedEvent as error:
            page.malformed += 1
            log.warning("v2event.malformed", reason=error.reason, errors=error.errors)
            continue
        if event is None:
            page.ignored += 1
            log.info("v2event.ignored", bitrix_event=str(raw.get("type", ""))[:64])
        elif isinstance(event, DeleteEvent):
            page.deleted_bots.append(event.data.bot.id)
            log.warning("bitrix.bot_deleted", bot_id=event.data.bot.id)
        elif isinstance(event, JoinEvent):
            welcome = welcome_of(event, received_at)
            if welcome:
                groups[welcome.key] = [welcome]
                welcomes.add(welcome.key)
        else:
            groups.setdefault(_group_of(event), []).extend(commands_of(event, received_at))
    seen: set[str] = set()
    tally = tally or MessageTally()
    for group, commands in groups.items():
        taken = commands if group in welcomes else _admit_more(group, commands, tally, may_rate)
        fresh = [command for command in taken if command.key not in seen]
        seen.update(command.key for command in fresh)
        if fresh:
            page.groups.append(fresh)
            page.admitted[group] = [c.key for c in fresh if c.notice is None]
    return page


def _admit_more(
    group: str,
    commands: list[IncomingCommand],
    tally: MessageTally,
    may_rate: Callable[[int], bool],
) -> list[IncomingCommand]:
    """`admit` for what of a message earlier pages did not bring (those are stored already).

    One message's commands come from its command events or from its message event, never
    both: were Bitrix24 to send both for one message (§0 item 14 says it does not
    [UNCONFIRMED for v2]), the kind admitted first wins, so no command runs twice."""
    earlier = tally.keys_of(group)
    first = next(iter(earlier), None) or (commands[0].key if commands else "")
    kind = _key_kind(group, first)
    same = [c for c in commands if _key_kind(group, c.key) == kind]
    if len(same) < len(commands):
        log.warning("v2event.both_kinds", message_key=group, dropped=len(commands) - len(same))
    new = [c for c in same if c.key not in earlier]
    return admit(new, message_key=group, may_rate=may_rate, already=len(earlier))


def _key_kind(group: str, key: str) -> bool:
    """Whether a job key is a command event's (`b24:<message>:c<command>:e<event>`), not a
    message event's (`b24:<message>:<n>`)."""
    return key.removeprefix(f"{group}:").startswith("c")
