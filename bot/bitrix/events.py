"""Bitrix24 bot events: the unflattened form -> typed models -> IncomingCommands (protocol §1).

Nothing from an event's `auth` block is used to call anything: in webhook mode every REST call
goes to B24_WEBHOOK_URL, whatever `client_endpoint` or domain an event carries.

Every field is checked here, at the boundary: ids are ASCII digits below 2^31 (pydantic's lax
int would take `1_000`, ` 12 `, `+5` or `12.0`, and `str.isdigit` takes `٥`, `²` or `１`), and
strings are bounded, so no forged body gets further than a 400.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from bot.commands import COMMAND_NAMES
from bot.errors import BotError
from bot.models import AuthorKind, BitrixRoute, IncomingCommand
from bot.texts import pick_language

_COMMAND_START = re.compile(r"^[\s\u200b\u2060\ufeff]*/([^\s@]*)")

MAX_ID: Final = 2**31 - 1  # Bitrix24 keeps ids in signed 32-bit columns
# Bitrix24 messages are at most 20,000 characters (§1.11); the margin is for the mention and
# BB-codes a client may add, and still keeps a forged body from becoming unbounded work.
MAX_MESSAGE_CHARS: Final = 30_000
_ASCII_ID = re.compile(r"[0-9]{1,10}")
_DIALOG_ID = re.compile(r"(?:chat)?([0-9]{1,10})")
_EVENT_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")


def _ascii_id(value: object) -> int:
    """An id as Bitrix24 sends it: a string of ASCII digits (§1.1), below 2^31."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _ASCII_ID.fullmatch(text) or int(text) > MAX_ID:
        raise ValueError("an id is ASCII digits below 2^31")
    return int(text)


def _dialog_id(value: str) -> str:
    """`<user id>` or `chat<chat id>` (§1.6)."""
    match = _DIALOG_ID.fullmatch(value)
    if match is None or not 0 < int(match.group(1)) <= MAX_ID:
        raise ValueError("a dialog is a user id or chat<id>")
    return value


Id = Annotated[int, BeforeValidator(_ascii_id), Field(ge=1)]
IdOrZero = Annotated[int, BeforeValidator(_ascii_id), Field(ge=0)]
DialogId = Annotated[str, AfterValidator(_dialog_id)]
Flag = Annotated[str, Field(max_length=16)]  # Y/N, P/C/L, TEXTAREA, a language code
Name = Annotated[str, Field(max_length=64)]
Data = Annotated[str, Field(max_length=1000)]  # CHAT_ENTITY_ID, CHAT_ENTITY_DATA_1
Text = Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class MessageParams(_Model):
    """`data[PARAMS]` of ONIMCOMMANDADD / ONIMBOTMESSAGEADD (§1.5)."""

    MESSAGE: Text = ""
    MESSAGE_ID: Id
    DIALOG_ID: DialogId
    FROM_USER_ID: Id
    SYSTEM: Flag = "N"
    CHAT_TYPE: Flag = ""
    CHAT_ENTITY_TYPE: Name = ""
    CHAT_ENTITY_ID: Data = ""
    CHAT_ENTITY_DATA_1: Data = ""
    LANGUAGE: Flag = ""
    # ONIMCOMMANDADD in a group chat: the bots it holds
    BOT_IN_CHAT: Annotated[dict[Name, Name], Field(max_length=100)] = {}


class CommandEntry(_Model):
    """One `data[COMMAND][<id>]` entry."""

    COMMAND: Name
    COMMAND_ID: Id
    COMMAND_PARAMS: Text = ""
    COMMAND_CONTEXT: Flag = "TEXTAREA"
    MESSAGE_ID: Id
    BOT_ID: IdOrZero = 0  # the bot the command is ours by (§1.5)


class UserBlock(_Model):
    """`data[USER]`: ONIMCOMMANDADD's carries no IS_* fields at all (§1.5, and the current docs'
    example of on-im-command-add.md): a missing IS_EXTRANET leaves the author unverified."""

    ID: IdOrZero = 0
    IS_BOT: Flag = "N"
    IS_CONNECTOR: Flag = "N"
    IS_NETWORK: Flag = "N"  # a Bitrix24.Network account: another portal's user
    IS_EXTRANET: Flag | None = None


class CommandData(_Model):
    COMMAND: Annotated[dict[Name, CommandEntry], Field(min_length=1, max_length=100)]
    PARAMS: MessageParams
    USER: UserBlock = UserBlock()


class MessageData(_Model):
    PARAMS: MessageParams
    USER: UserBlock = UserBlock()


class JoinParams(_Model):
    DIALOG_ID: DialogId
    USER_ID: IdOrZero = 0
    LANGUAGE: Flag = ""
    CHAT_TYPE: Flag = ""
    CHAT_ENTITY_TYPE: Name = ""


class JoinData(_Model):
    PARAMS: JoinParams


class DeleteData(_Model):
    BOT_ID: IdOrZero = 0
    BOT_CODE: Name = ""


class CommandEvent(_Model):
    event: Literal["ONIMCOMMANDADD"]
    data: CommandData
    ts: str = Field("", max_length=20, pattern=r"^[0-9]*$")  # when the queue sent it (§1.2)


class MessageEvent(_Model):
    event: Literal["ONIMBOTMESSAGEADD"]
    data: MessageData


class JoinEvent(_Model):
    event: Literal["ONIMBOTJOINCHAT"]
    data: JoinData


class DeleteEvent(_Model):
    event: Literal["ONIMBOTDELETE"]
    data: DeleteData


Event = CommandEvent | MessageEvent | JoinEvent | DeleteEvent
EVENT_TYPES: dict[str, type[Event]] = {
    "ONIMCOMMANDADD": CommandEvent,
    "ONIMBOTMESSAGEADD": MessageEvent,
    "ONIMBOTJOINCHAT": JoinEvent,
    "ONIMBOTDELETE": DeleteEvent,
}


class MalformedEvent(BotError):
    """A body that is no event at all: empty, or without a plain `event` name."""


def parse_event(form: dict[str, Any]) -> Event | None:
    """The typed event, or None for a well-formed event this bot does not handle.

    Raises MalformedEvent for a body without a plain event name, and pydantic.ValidationError
    for a known event with a malformed body.
    """
    name = form.get("event")
    if not isinstance(name, str) or not _EVENT_NAME.fullmatch(name):
        raise MalformedEvent
    model = EVENT_TYPES.get(name.upper())
    if model is None:
        return None
    return model.model_validate({**form, "event": name.upper()})


def split_commands(message: str) -> list[str]:
    """The command texts of a message: a line starting with one of our commands opens one, and
    the lines after it, up to the next of ours, continue its comment. A `/line` that is not
    ours (`/путь к файлу`) is comment text, unless no command is open yet: then it opens one,
    which is answered "Unknown command"."""
    commands: list[str] = []
    for line in message.split("\n"):
        match = _COMMAND_START.match(line)
        if match and (not commands or match.group(1).casefold() in COMMAND_NAMES):
            commands.append(line)
        elif commands:
            commands[-1] += "\n" + line
    return commands


def _command_name(text: str) -> str:
    match = _COMMAND_START.match(text)
    return match.group(1).casefold() if match else ""


def is_openline(params: MessageParams | JoinParams) -> bool:
    """An open line's operator chat: either mark alone suffices (§1.7, §1.8)."""
    return params.CHAT_ENTITY_TYPE == "LINES" or params.CHAT_TYPE == "L"


def chat_session_id(params: MessageParams) -> int | None:
    """An open-line chat's session: the 6th `|` field of CHAT_ENTITY_DATA_1 (§1.7)."""
    return session_of_entity_data(params.CHAT_ENTITY_DATA_1) if is_openline(params) else None


def session_of_entity_data(entity_data_1: str) -> int | None:
    """The session of an open-line chat's ENTITY_DATA_1: its 6th `|` field (§1.7)."""
    fields = entity_data_1.split("|")
    value = fields[5] if len(fields) > 5 else ""  # noqa: PLR2004
    return int(value) if _ASCII_ID.fullmatch(value) and 0 < int(value) <= MAX_ID else None


def author_kind(data: CommandData | MessageData) -> AuthorKind:
    """Staff, an extranet (or Bitrix24.Network) user or an open line's customer (a connector
    user)."""
    params = data.PARAMS
    if data.USER.IS_CONNECTOR == "Y" or (
        is_openline(params) and is_line_customer(params.CHAT_ENTITY_ID, params.FROM_USER_ID)
    ):
        return "customer"
    if data.USER.IS_NETWORK == "Y":
        return "extranet"  # a guest from another portal: not this portal's staff either
    if data.USER.IS_EXTRANET is None:
        # ONIMCOMMANDADD carries no IS_EXTRANET (§1.5): the core asks Bitrix24 (im.user.get)
        # before such an author may rate.
        return "unverified"
    return "extranet" if data.USER.IS_EXTRANET == "Y" else "staff"


def is_line_customer(entity_id: str, user_id: int) -> bool:
    """The user is the customer the open-line chat belongs to: the last field of its ENTITY_ID,
    `connector|LINE_ID|CONNECTOR_CHAT_ID|CONNECTOR_USER_ID` (§1.7).

    [UNCONFIRMED] that CONNECTOR_USER_ID is the customer's portal user id for every connector:
    a command event has no IS_CONNECTOR (§1.5), so this is all it tells.
    """
    fields = entity_id.split("|")
    return len(fields) > 3 and fields[3] == str(user_id)  # noqa: PLR2004


def commands_of(event: CommandEvent | MessageEvent, received_at: float) -> list[IncomingCommand]:
    """The commands an event carries, one per command line of the message.

    ONIMCOMMANDADD keys `data[COMMAND]` by command id, so a command repeated on several lines
    appears once (§0 item 11): the lines are taken from the message text instead. Both events
    of one message give the same keys, so a message delivered both ways runs once (§0 item 14).
    """
    params = event.data.PARAMS
    if params.SYSTEM == "Y" or event.data.USER.IS_BOT == "Y":
        return []
    if params.CHAT_ENTITY_TYPE == "LIVECHAT":  # the customer's side of an open line (§0 item 12)
        return []
    private = str(params.FROM_USER_ID) == params.DIALOG_ID
    route = BitrixRoute(
        dialog_id=params.DIALOG_ID,
        author_dialog_id=str(params.FROM_USER_ID),
        message_id=params.MESSAGE_ID,
        # A group-chat message reaches the bot as a message only when it is a member; a
        # command's BOT_IN_CHAT lists every bot of the chat, maybe other applications' only.
        bot_in_chat=private or isinstance(event, MessageEvent) or _ours_in_chat(event),
        openline=is_openline(params),
    )
    texts: list[tuple[str, str, int | None]] = []  # (key, text, command id)
    if isinstance(event, CommandEvent):
        entries = {e.COMMAND.casefold(): e for e in event.data.COMMAND.values()}
        clicks = [e for e in entries.values() if e.COMMAND_CONTEXT != "TEXTAREA"]
        if clicks:  # a keyboard button or menu item: the command is in the entry alone
            entry = clicks[0]
            text = f"/{entry.COMMAND} {entry.COMMAND_PARAMS}"
            texts.append((click_key(event, entry), text, entry.COMMAND_ID))
            if entry.COMMAND_CONTEXT == "KEYBOARD":
                route = route.model_copy(update={"keyboard_message_id": entry.MESSAGE_ID})
        else:
            for index, text in enumerate(split_commands(params.MESSAGE)):
                name = _command_name(text)
                if name in COMMAND_NAMES:
                    entry_id = entries[name].COMMAND_ID if name in entries else None
                    texts.append((f"b24:{params.MESSAGE_ID}:{index}", text, entry_id))
    else:
        found = split_commands(params.MESSAGE)
        if not found and not route.openline:
            # Written to the bot (private chat, a mention): a message with no command gets a
            # hint. In an open line a member bot with open-line support sees every message
            # of the dialog (§1.5), written to the customer, not to it: only commands count.
            found = [params.MESSAGE]
        texts = [(f"b24:{params.MESSAGE_ID}:{i}", text, None) for i, text in enumerate(found)]
    kind = author_kind(event.data)
    return [
        IncomingCommand(
            key=key,
            source="bitrix",
            author_id=params.FROM_USER_ID,
            author_kind=kind,
            text=text,
            chat_session_id=chat_session_id(params),
            language=pick_language(params.LANGUAGE),
            received_at=received_at,
            route=route.model_copy(update={"command_id": command_id}) if command_id else route,
        )
        for key, text, command_id in texts
    ]


def _ours_in_chat(event: CommandEvent | MessageEvent) -> bool:
    if not isinstance(event, CommandEvent):
        return False
    present = {*event.data.PARAMS.BOT_IN_CHAT.keys(), *event.data.PARAMS.BOT_IN_CHAT.values()}
    return any(str(entry.BOT_ID) in present for entry in event.data.COMMAND.values())


def message_key(event: CommandEvent | MessageEvent) -> str:
    """The key every command of one message starts with, whichever event carried it."""
    return f"b24:{event.data.PARAMS.MESSAGE_ID}"


def click_key(event: CommandEvent, entry: CommandEntry) -> str:
    """The de-dup key of one click: who clicked what, on which keyboard, when.

    A click's MESSAGE_ID is the keyboard's message, the same for every click on it, and its
    body carries no id of its own (the click is `Im\\Command::onCommandAdd` with the keyboard
    message's id and no TEMPLATE_ID, §6.9). What tells clicks apart is the clicking user, the
    button, and `ts`, the second the queue sent the event (§1.2): a redelivered event keeps
    its `ts` [UNCONFIRMED: Bitrix24 documents no redelivery at all], so it runs once, and a
    second click on the same button within the same second counts once, like a double-click.
    """
    params = event.data.PARAMS
    return (
        f"b24:click:{entry.MESSAGE_ID}:{params.FROM_USER_ID}:{event.ts}:"
        f"{entry.COMMAND}:{entry.COMMAND_PARAMS}"
    )


def welcome_of(event: JoinEvent, received_at: float) -> IncomingCommand | None:
    """ONIMBOTJOINCHAT: a short welcome with the syntax, as if `/start` had been sent; none in
    an open line, where the connector would forward it to the customer (§00 item 7)."""
    params = event.data.PARAMS
    if is_openline(params):
        return None
    return IncomingCommand(
        key=f"b24:join:{params.DIALOG_ID}:{int(received_at)}",
        source="bitrix",
        author_id=max(params.USER_ID, 1),
        text="/start",
        language=pick_language(params.LANGUAGE),
        received_at=received_at,
        route=BitrixRoute(
            dialog_id=params.DIALOG_ID, author_dialog_id=str(max(params.USER_ID, 1))
        ),
    )
