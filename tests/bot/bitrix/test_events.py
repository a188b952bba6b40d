"""Event bodies -> commands: the rules, and a fuzz that nothing but a validation error escapes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.bitrix.events import (
    MAX_MESSAGE_CHARS,
    CommandEvent,
    MalformedEvent,
    MessageEvent,
    MessageParams,
    chat_session_id,
    commands_of,
    parse_event,
    split_commands,
)
from bot.dispatch import command_fields
from bot.models import IncomingCommand


@pytest.mark.parametrize(
    ("message", "commands"),
    [
        ("/rate 494 5", ["/rate 494 5"]),
        ("/rate 494 5 Молодец\nвторая строка", ["/rate 494 5 Молодец\nвторая строка"]),
        ("привет\n/rate 1 2\n/help", ["/rate 1 2", "/help"]),
        ("  /rate 1 2\n\u200b/help", ["  /rate 1 2", "\u200b/help"]),
        ("нет команд", []),
        ("", []),
        # A `/line` that is not one of ours stays in the comment (issue 8 item 4)...
        ("/rate 494 5 Итог:\n/путь к файлу не тот", ["/rate 494 5 Итог:\n/путь к файлу не тот"]),
        ("/rate 494 5\n/usr/bin\n/help", ["/rate 494 5\n/usr/bin", "/help"]),
        ("/rate 1 2\n/Rate 3 4\n/HELP", ["/rate 1 2", "/Rate 3 4", "/HELP"]),
        # ...but the first one opens a command, answered "Unknown command".
        ("/foo x\n/bar\n/rate 1 2", ["/foo x\n/bar", "/rate 1 2"]),
        ("привет\n/foo", ["/foo"]),
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
        ("LINES", "Y|LEAD|1209|N|N|2147483647|1", 2147483647),
        ("LINES", "Y|LEAD|1209|N|N|2147483648|1", None),
        # Digits of other scripts: str.isdigit() and int() take them, Bitrix24 never sends them.
        ("LINES", "Y|LEAD|1209|N|N|٥|1", None),
        ("LINES", "Y|LEAD|1209|N|N|²|1", None),
        ("LINES", "Y|LEAD|1209|N|N|１２|1", None),
        ("LINES", "Y|LEAD|1209|N|N| 343|1", None),
        ("LINES", "Y|LEAD|1209|N|N|+343|1", None),
        ("", "Y|LEAD|1209|N|N|343|1", None),
        ("L", "Y|LEAD|1209|N|N|343|1", 343),  # CHAT_TYPE=L alone marks an open line too
    ],
)
def test_an_open_line_chat_s_session_is_the_sixth_field(
    entity_type: str, data: str, session: int | None
) -> None:
    params = MessageParams.model_validate(
        {
            "MESSAGE_ID": "1",
            "DIALOG_ID": "chat1",
            "FROM_USER_ID": "27",
            "CHAT_ENTITY_TYPE": "" if entity_type == "L" else entity_type,
            "CHAT_TYPE": "L" if entity_type == "L" else "C",
            "CHAT_ENTITY_DATA_1": data,
        }
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
    assert (command.key, command.text, command.bitrix_route.dialog_id) == (
        "b24:7:0",
        "привет",
        "27",
    )


def test_event_names_are_case_insensitive_and_unknown_ones_are_none() -> None:
    assert isinstance(
        parse_event(message_event("x") | {"event": "onimbotmessageadd"}), MessageEvent
    )
    assert parse_event({"event": "ONAPPINSTALL"}) is None


@pytest.mark.parametrize(
    "form",
    [{}, {"event": ""}, {"event": {"x": "1"}}, {"event": "ONIM BOT"}, {"event": "Я" * 10}],
    ids=["empty", "empty name", "a table", "a space", "not ascii"],
)
def test_a_body_without_a_plain_event_name_is_no_event(form: dict[str, Any]) -> None:
    with pytest.raises(MalformedEvent):
        parse_event(form)


@pytest.mark.parametrize("field", ["MESSAGE_ID", "FROM_USER_ID", "DIALOG_ID"])
@pytest.mark.parametrize(
    "value",
    [
        "１２３",
        "٥",
        "²",
        "1_000",
        " 12",
        "12 ",
        "+5",
        "12.0",
        "-1",
        "0",
        "",
        "2147483648",
        "9" * 30,
    ],
)
def test_ids_are_ascii_digits_below_2_to_the_31(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        parse_event(message_event("/help", **{field: value}))


@pytest.mark.parametrize(
    "dialog", ["chat٥", "chat", "chat0", "chat2147483648", "Chat5", "chat 5", "27chat"]
)
def test_a_dialog_is_a_user_id_or_chat_and_an_id(dialog: str) -> None:
    with pytest.raises(ValidationError):
        parse_event(message_event("/help", DIALOG_ID=dialog))


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("COMMAND_ID", "٩"),
        ("COMMAND_ID", "2147483648"),
        ("MESSAGE_ID", "７"),
        ("USER", "１"),
        ("BOT_IN_CHAT", "x" * 65),
    ],
)
def test_every_id_of_a_command_event_is_checked(where: str, value: str) -> None:
    entry = {"COMMAND": "rate", "COMMAND_ID": "9", "MESSAGE_ID": "7"}
    params = message_event("/rate 1 2")["data"]["PARAMS"]
    data: dict[str, Any] = {"COMMAND": {"9": entry}, "PARAMS": params}
    if where == "USER":
        data["USER"] = {"ID": value}
    elif where == "BOT_IN_CHAT":
        params["BOT_IN_CHAT"] = {value: value}
    else:
        entry[where] = value
    with pytest.raises(ValidationError):
        parse_event({"event": "ONIMCOMMANDADD", "data": data})


def test_the_largest_ids_and_message_pass_and_one_more_character_does_not() -> None:
    largest = message_event("ж" * MAX_MESSAGE_CHARS, MESSAGE_ID="2147483647", DIALOG_ID="27")
    assert isinstance(parse_event(largest), MessageEvent)
    with pytest.raises(ValidationError):
        parse_event(message_event("ж" * (MAX_MESSAGE_CHARS + 1)))


@pytest.mark.parametrize(
    ("user", "params", "kind"),
    [
        ({"IS_EXTRANET": "N"}, {}, "staff"),
        # ONIMCOMMANDADD's USER block has no IS_* fields: the core looks the author up.
        ({}, {}, "unverified"),
        ({"IS_EXTRANET": "Y"}, {}, "extranet"),
        ({"IS_CONNECTOR": "Y"}, {}, "customer"),
        ({"IS_CONNECTOR": "Y", "IS_EXTRANET": "Y"}, {}, "customer"),
        # ONIMCOMMANDADD has no IS_* fields: in an open line, the chat names its customer.
        ({}, {"CHAT_ENTITY_TYPE": "LINES", "CHAT_ENTITY_ID": "livechat|1|1373|27"}, "customer"),
        ({}, {"CHAT_TYPE": "L", "CHAT_ENTITY_ID": "telegrambot|2|55|27"}, "customer"),
        (
            {},
            {"CHAT_ENTITY_TYPE": "LINES", "CHAT_ENTITY_ID": "livechat|1|1373|1211"},
            "unverified",
        ),
        ({}, {"CHAT_ENTITY_TYPE": "CHAT", "CHAT_ENTITY_ID": "x|1|2|27"}, "unverified"),
    ],
)
def test_the_author_s_kind_comes_from_the_user_block_or_the_line(
    user: dict[str, str], params: dict[str, str], kind: str
) -> None:
    form = message_event("/rate 1 5", DIALOG_ID="chat5", **params)
    form["data"]["USER"] = {"ID": "27", **user}
    event = parse_event(form)
    assert isinstance(event, MessageEvent)
    assert {c.author_kind for c in commands_of(event, time.time())} == {kind}


def test_the_customer_side_of_an_open_line_never_yields_a_command() -> None:
    event = parse_event(message_event("/rate 1 5", DIALOG_ID="chat5", CHAT_ENTITY_TYPE="LIVECHAT"))
    assert isinstance(event, MessageEvent)
    assert commands_of(event, time.time()) == []


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
    assert [(c.key, c.text, c.bitrix_route.command_id) for c in commands] == [
        ("b24:7:1", "/rate 494 5", 9),
        ("b24:7:2", "/help", None),
    ]


def click_event(user: str = "27", ts: str = "1772109486", params: str = "494 3") -> dict[str, Any]:
    """A click on a button of the bot's keyboard message 70 (§6.9): no TEMPLATE_ID of its own."""
    entry = {
        "COMMAND": "rate",
        "COMMAND_ID": "9",
        "COMMAND_PARAMS": params,
        "COMMAND_CONTEXT": "KEYBOARD",
        "MESSAGE_ID": "70",
    }
    message = {"MESSAGE": f"/rate {params}", "MESSAGE_ID": "70", "DIALOG_ID": user}
    return {
        "event": "ONIMCOMMANDADD",
        "data": {"COMMAND": {"9": entry}, "PARAMS": message | {"FROM_USER_ID": user}},
        "ts": ts,
    }


def click_key_of(form: dict[str, Any]) -> str:
    event = parse_event(form)
    assert isinstance(event, CommandEvent)
    [command] = commands_of(event, time.time())
    assert command.bitrix_route.keyboard_message_id == 70
    return command.key


def test_a_click_is_keyed_by_user_button_and_second_so_a_redelivery_is_the_same() -> None:
    assert click_key_of(click_event()) == "b24:click:70:27:1772109486:rate:494 3"
    assert click_key_of(click_event()) == click_key_of(click_event())


@pytest.mark.parametrize(
    "other",
    [
        click_event(ts="1772109487"),  # the same button a second later: 3, 5, 3
        click_event(params="494 5"),  # another button in the same second
        click_event(user="28"),  # another user's click
    ],
)
def test_another_click_has_another_key(other: dict[str, Any]) -> None:
    assert click_key_of(other) != click_key_of(click_event())


@pytest.mark.parametrize("ts", ["17721094860000000000000", "1e9", "-1", "١٢٣"])
def test_a_forged_ts_is_a_malformed_event(ts: str) -> None:
    with pytest.raises(ValidationError):
        parse_event(click_event(ts=ts))


_TEXT = st.text(max_size=40)
_SAMPLES = [
    "0",
    "1",
    "-5",
    "27",
    "chat1157",
    "LINES",
    "L",
    "Y",
    "KEYBOARD",
    "rate",
    "livechat|1|2|27",
]
# Ids a forged event may carry: non-ASCII digits, Python-only number forms, 2³¹.
EVIL_IDS = [
    "１２３",
    "٥",
    "²",
    "1_000",
    " 12",
    "+5",
    "12.0",
    "2147483648",
    "chat٥",
    "Y|L|1|N|N|٥",
]
_VALUE: st.SearchStrategy[Any] = st.recursive(
    _TEXT | st.sampled_from(_SAMPLES + EVIL_IDS),
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
                "IS_CONNECTOR",
                "IS_EXTRANET",
                "CHAT_TYPE",
                "CHAT_ENTITY_ID",
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
def test_any_form_becomes_commands_that_can_run_or_a_validation_error(
    form: dict[str, Any],
) -> None:
    try:
        event = parse_event(form)
    except (ValidationError, MalformedEvent):
        return
    if isinstance(event, CommandEvent | MessageEvent):
        for command in commands_of(event, time.time()):
            assert command.key.startswith("b24:")
            assert 0 < command.author_id < 2**31
            # A stored job reads back as it was written, and its text parses or is refused.
            assert IncomingCommand.model_validate_json(command.model_dump_json()) == command
            command_fields(command)


_MESSAGES = st.lists(
    st.sampled_from(
        [
            "/rate",
            "/RATE@Bot",
            "/help",
            "/оценка",
            "/x",
            "/",
            "494",
            "5",
            "★",
            "ok",
            "\n",
            " ",
            "#1",
        ]
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
    keyed: list[dict[str, str]] = []
    for form in (
        {"event": "ONIMCOMMANDADD", "data": {"COMMAND": {"9": entry}, "PARAMS": params}},
        {"event": "ONIMBOTMESSAGEADD", "data": {"PARAMS": params}},
    ):
        event = parse_event(form)
        assert isinstance(event, CommandEvent | MessageEvent)
        commands = commands_of(event, time.time())
        assert len({c.key for c in commands}) == len(commands)
        assert all(c.bitrix_route.openline is (entity == "LINES") for c in commands)
        keyed.append({c.key: c.text for c in commands})
    if context == "TEXTAREA":  # both events of one typed message: the same keys (§0 item 14)
        by_command, by_message = keyed
        assert by_command.items() <= by_message.items()
