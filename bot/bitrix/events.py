"""Bitrix24 bot events: the unflattened form -> typed models -> IncomingCommands (protocol §1).

Nothing from an event's `auth` block is used to call anything: in webhook mode every REST call
goes to B24_WEBHOOK_URL, whatever `client_endpoint` or domain an event carries.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.commands import COMMAND_NAMES
from bot.models import BitrixRoute, IncomingCommand
from bot.texts import pick_language

_COMMAND_START = re.compile(r"^[\s\u200b\u2060\ufeff]*/([^\s@]*)")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class MessageParams(_Model):
    """`data[PARAMS]` of ONIMCOMMANDADD / ONIMBOTMESSAGEADD (§1.5)."""

    MESSAGE: str = ""
    MESSAGE_ID: int = Field(gt=0)
    DIALOG_ID: str = Field(min_length=1, max_length=64)
    FROM_USER_ID: int = Field(gt=0)
    SYSTEM: str = "N"
    CHAT_ENTITY_TYPE: str = ""
    CHAT_ENTITY_DATA_1: str = ""
    LANGUAGE: str = ""
    BOT_IN_CHAT: dict[str, str] = {}  # ONIMCOMMANDADD in a group chat: the bots it holds


class CommandEntry(_Model):
    """One `data[COMMAND][<id>]` entry."""

    COMMAND: str
    COMMAND_ID: int = Field(gt=0)
    COMMAND_PARAMS: str = ""
    COMMAND_CONTEXT: str = "TEXTAREA"
    MESSAGE_ID: int = Field(gt=0)


class UserBlock(_Model):
    ID: int = 0
    IS_BOT: str = "N"


class CommandData(_Model):
    COMMAND: dict[str, CommandEntry] = Field(min_length=1)
    PARAMS: MessageParams
    USER: UserBlock = UserBlock()


class MessageData(_Model):
    PARAMS: MessageParams
    USER: UserBlock = UserBlock()


class JoinParams(_Model):
    DIALOG_ID: str = Field(min_length=1, max_length=64)
    USER_ID: int = 0
    LANGUAGE: str = ""


class JoinData(_Model):
    PARAMS: JoinParams


class DeleteData(_Model):
    BOT_ID: int = 0
    BOT_CODE: str = ""


class CommandEvent(_Model):
    event: Literal["ONIMCOMMANDADD"]
    data: CommandData


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


def parse_event(form: dict[str, Any]) -> Event | None:
    """The typed event, or None for an event this bot does not handle.

    Raises pydantic.ValidationError for a known event with a malformed body.
    """
    model = EVENT_TYPES.get(str(form.get("event", "")).upper())
    if model is None:
        return None
    return model.model_validate({**form, "event": str(form["event"]).upper()})


def split_commands(message: str) -> list[str]:
    """The command texts of a message: each line starting with `/` opens one, and the lines
    after it, up to the next command, continue its comment."""
    commands: list[str] = []
    for line in message.split("\n"):
        if _COMMAND_START.match(line):
            commands.append(line)
        elif commands:
            commands[-1] += "\n" + line
    return commands


def _command_name(text: str) -> str:
    match = _COMMAND_START.match(text)
    return match.group(1).casefold() if match else ""


def chat_session_id(params: MessageParams) -> int | None:
    """An open-line chat's session: the 6th `|` field of CHAT_ENTITY_DATA_1 (§1.7)."""
    if params.CHAT_ENTITY_TYPE != "LINES":
        return None
    fields = params.CHAT_ENTITY_DATA_1.split("|")
    value = fields[5] if len(fields) > 5 else ""  # noqa: PLR2004
    return int(value) if value.isdigit() and 0 < int(value) < 2**31 else None


def commands_of(event: CommandEvent | MessageEvent, received_at: float) -> list[IncomingCommand]:
    """The commands an event carries, one per command line of the message.

    ONIMCOMMANDADD keys `data[COMMAND]` by command id, so a command repeated on several lines
    appears once (§0 item 11): the lines are taken from the message text instead. Both events
    of one message give the same keys, so a message delivered both ways runs once (§0 item 14).
    """
    params = event.data.PARAMS
    if params.SYSTEM == "Y" or event.data.USER.IS_BOT == "Y":
        return []
    private = str(params.FROM_USER_ID) == params.DIALOG_ID
    route = BitrixRoute(
        dialog_id=params.DIALOG_ID,
        author_dialog_id=str(params.FROM_USER_ID),
        message_id=params.MESSAGE_ID,
        # A group-chat message reaches the bot as a message only when it is a member.
        bot_in_chat=private or isinstance(event, MessageEvent) or bool(params.BOT_IN_CHAT),
        openline=params.CHAT_ENTITY_TYPE == "LINES",
    )
    texts: list[tuple[str, str, int | None]] = []  # (key, text, command id)
    if isinstance(event, CommandEvent):
        entries = {e.COMMAND.casefold(): e for e in event.data.COMMAND.values()}
        clicks = [e for e in entries.values() if e.COMMAND_CONTEXT != "TEXTAREA"]
        if clicks:  # a keyboard button or menu item: the command is in the entry alone
            entry = clicks[0]
            key = f"b24:{entry.MESSAGE_ID}:click:{entry.COMMAND}:{entry.COMMAND_PARAMS}"
            texts.append((key, f"/{entry.COMMAND} {entry.COMMAND_PARAMS}", entry.COMMAND_ID))
        else:
            for index, text in enumerate(split_commands(params.MESSAGE)):
                name = _command_name(text)
                if name in COMMAND_NAMES:
                    entry_id = entries[name].COMMAND_ID if name in entries else None
                    texts.append((f"b24:{params.MESSAGE_ID}:{index}", text, entry_id))
    else:
        found = split_commands(params.MESSAGE) or [params.MESSAGE]
        texts = [(f"b24:{params.MESSAGE_ID}:{i}", text, None) for i, text in enumerate(found)]
    return [
        IncomingCommand(
            key=key,
            source="bitrix",
            author_id=params.FROM_USER_ID,
            text=text,
            chat_session_id=chat_session_id(params),
            language=pick_language(params.LANGUAGE),
            received_at=received_at,
            route=route.model_copy(update={"command_id": command_id}) if command_id else route,
        )
        for key, text, command_id in texts
    ]


def welcome_of(event: JoinEvent, received_at: float) -> IncomingCommand:
    """ONIMBOTJOINCHAT: a short welcome with the syntax, as if `/start` had been sent."""
    params = event.data.PARAMS
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
