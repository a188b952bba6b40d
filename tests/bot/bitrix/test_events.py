"""Event bodies -> commands: the rules, and a fuzz that nothing but a validation error escapes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.bitrix.events import (
    CommandEvent,
    MessageEvent,
    MessageParams,
    chat_session_id,
    commands_of,
    parse_event,
    split_commands,
)


@pytest.mark.parametrize(
    ("message", "commands"),
    [
        ("/rate 494 5", ["/rate 494 5"]),
        ("/rate 494 5 Молодец\nвторая строка", ["/rate 494 5 Молодец\nвторая строка"]),
        ("привет\n/rate 1 2\n/help", ["/rate 1 2", "/help"]),
        ("  /rate 1 2\n\u200b/help", ["  /rate 1 2", "\u200b/help"]),
        ("нет команд", []),
        ("", []),
    ],
)
def test_split_commands(message: str, commands: list[str]) -> None:
    assert split_commands(message) == commands


@pytest.mark.parametrize(
    ("entity_type", "data", "session"),
    [
        ("LINES", "Y|LEAD|1209|N|N|343|1773682918|0|0|0", 343),
        ("LINES", "Y|LEAD|1209|N|N|0|1", None),
        ("LINES", "Y|LEAD", None),
        ("LINES", "Y|LEAD|1209|N|N|abc|1", None),
        ("LINES", "Y|LEAD|1209|N|N|99999999999|1", None),
        ("", "Y|LEAD|1209|N|N|343|1", None),
    ],
)
def test_an_open_line_chat_s_session_is_the_sixth_field(
    entity_type: str, data: str, session: int | None
) -> None:
    params = MessageParams(
        MESSAGE_ID=1,
        DIALOG_ID="chat1",
        FROM_USER_ID=27,
        CHAT_ENTITY_TYPE=entity_type,
        CHAT_ENTITY_DATA_1=data,
    )
    assert chat_session_id(params) == session


def message_event(text: str, **params: str) -> dict[str, Any]:
    return {
        "event": "ONIMBOTMESSAGEADD",
        "data": {
            "PARAMS": {
                "MESSAGE": text,
                "MESSAGE_ID": "7",
                "DIALOG_ID": "27",
                "FROM_USER_ID": "27",
                **params,
            }
        },
    }


def test_a_message_without_commands_is_one_text_to_answer() -> None:
    event = parse_event(message_event("привет"))
    assert isinstance(event, MessageEvent)
    [command] = commands_of(event, time.time())
    assert (command.key, command.text, command.route.dialog_id) == ("b24:7:0", "привет", "27")


def test_event_names_are_case_insensitive_and_unknown_ones_are_none() -> None:
    assert isinstance(
        parse_event(message_event("x") | {"event": "onimbotmessageadd"}), MessageEvent
    )
    assert parse_event({"event": "ONAPPINSTALL"}) is None
    assert parse_event({}) is None


def test_only_our_command_lines_of_a_command_event_are_taken() -> None:
    form = {
        "event": "ONIMCOMMANDADD",
        "data": {
            "COMMAND": {"9": {"COMMAND": "rate", "COMMAND_ID": "9", "MESSAGE_ID": "7"}},
            "PARAMS": {
                "MESSAGE": "/other x\n/rate 494 5\n/help",
                "MESSAGE_ID": "7",
                "DIALOG_ID": "27",
                "FROM_USER_ID": "27",
            },
        },
    }
    event = parse_event(form)
    assert isinstance(event, CommandEvent)
    commands = commands_of(event, time.time())
    assert [(c.key, c.text, c.route.command_id) for c in commands] == [
        ("b24:7:1", "/rate 494 5", 9),
        ("b24:7:2", "/help", None),
    ]


_TEXT = st.text(max_size=40)
_VALUE: st.SearchStrategy[Any] = st.recursive(
    _TEXT | st.sampled_from(["0", "1", "-5", "27", "chat1157", "LINES", "Y", "KEYBOARD", "rate"]),
    lambda inner: st.dictionaries(
        st.sampled_from(
            [
                "COMMAND",
                "PARAMS",
                "USER",
                "BOT",
                "MESSAGE",
                "MESSAGE_ID",
                "DIALOG_ID",
                "FROM_USER_ID",
                "COMMAND_ID",
                "COMMAND_CONTEXT",
                "COMMAND_PARAMS",
                "9",
                "CHAT_ENTITY_TYPE",
                "CHAT_ENTITY_DATA_1",
                "BOT_IN_CHAT",
                "IS_BOT",
            ]
        )
        | _TEXT,
        inner,
        max_size=6,
    ),
    max_leaves=25,
)
_FORMS = st.fixed_dictionaries(
    {
        "event": st.sampled_from(
            ["ONIMCOMMANDADD", "ONIMBOTMESSAGEADD", "ONIMBOTJOINCHAT", "ONIMBOTDELETE", "X"]
        )
    },
    optional={"data": _VALUE, "auth": _VALUE},
)


@settings(max_examples=800)
@given(form=_FORMS)
def test_any_form_becomes_commands_or_a_validation_error(form: dict[str, Any]) -> None:
    try:
        event = parse_event(form)
    except ValidationError:
        return
    if isinstance(event, CommandEvent | MessageEvent):
        for command in commands_of(event, time.time()):
            assert command.key.startswith("b24:")


_MESSAGES = st.lists(
    st.sampled_from(
        ["/rate", "/RATE@Bot", "/help", "/оценка", "/x", "494", "5", "★", "ok", "\n", " ", "#1"]
    ),
    max_size=12,
).map(" ".join)


@settings(max_examples=500)
@given(
    message=_MESSAGES,
    context=st.sampled_from(["TEXTAREA", "KEYBOARD", "MENU"]),
    entity=st.sampled_from(["", "LINES"]),
    data_1=st.text(max_size=30) | st.just("Y|LEAD|1|N|N|343|1"),
)
def test_well_formed_events_give_commands_with_unique_keys(
    message: str, context: str, entity: str, data_1: str
) -> None:
    params = {
        "MESSAGE": message,
        "MESSAGE_ID": "7",
        "DIALOG_ID": "chat5",
        "FROM_USER_ID": "27",
        "CHAT_ENTITY_TYPE": entity,
        "CHAT_ENTITY_DATA_1": data_1,
    }
    entry = {
        "COMMAND": "rate",
        "COMMAND_ID": "9",
        "MESSAGE_ID": "7",
        "COMMAND_CONTEXT": context,
        "COMMAND_PARAMS": "494 5",
    }
    for form in (
        {"event": "ONIMCOMMANDADD", "data": {"COMMAND": {"9": entry}, "PARAMS": params}},
        {"event": "ONIMBOTMESSAGEADD", "data": {"PARAMS": params}},
    ):
        event = parse_event(form)
        assert isinstance(event, CommandEvent | MessageEvent)
        commands = commands_of(event, time.time())
        assert len({c.key for c in commands}) == len(commands)
        assert all(c.route.openline is (entity == "LINES") for c in commands)
