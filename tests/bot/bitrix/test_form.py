"""PHP-style form encoding: the shape of every Bitrix24 event body and batch command."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.bitrix.batch import BatchRef
from bot.bitrix.form import MAX_DEPTH, FormError, encode_query, flatten_form, unflatten_form


@pytest.mark.parametrize(
    ("pairs", "nested"),
    [
        ([("event", "ONIMCOMMANDADD")], {"event": "ONIMCOMMANDADD"}),
        ([("auth[application_token]", "t")], {"auth": {"application_token": "t"}}),
        (
            [
                ("data[COMMAND][103][COMMAND_PARAMS]", "494 5"),
                ("data[COMMAND][103][COMMAND]", "rate"),
            ],
            {"data": {"COMMAND": {"103": {"COMMAND_PARAMS": "494 5", "COMMAND": "rate"}}}},
        ),
        # Numeric segments stay dictionary keys: bot 567 is not index 567 of a list.
        ([("data[BOT][567][BOT_ID]", "567")], {"data": {"BOT": {"567": {"BOT_ID": "567"}}}}),
        ([("a[]", "x"), ("a[]", "y")], {"a": {"0": "x", "1": "y"}}),
        ([("a[5]", "x"), ("a[]", "y")], {"a": {"5": "x", "6": "y"}}),
        ([("a", "1"), ("a", "2")], {"a": "2"}),  # the later value wins, as in parse_str
        ([("a", "1"), ("a[b]", "2")], {"a": {"b": "2"}}),
        ([("a[b]", "2"), ("a", "1")], {"a": "1"}),
        ([("a]b[", "x"), ("[x]", "y")], {"a]b[": "x", "[x]": "y"}),  # not bracket-shaped: as is
        (
            [("MESSAGE", "/rate 494 5 Молодец\nещё строка")],
            {"MESSAGE": "/rate 494 5 Молодец\nещё строка"},
        ),
        ([], {}),
    ],
)
def test_unflatten(pairs: list[tuple[str, str]], nested: dict[str, Any]) -> None:
    assert unflatten_form(pairs) == nested


def test_absurd_nesting_is_refused() -> None:
    key = "a" + "[x]" * MAX_DEPTH
    with pytest.raises(FormError):
        unflatten_form([(key, "v")])
    assert unflatten_form([("a" + "[x]" * (MAX_DEPTH - 1), "v")])


@pytest.mark.parametrize(
    ("data", "pairs"),
    [
        ({"SESSION_ID": 494, "RATING": 5}, [("SESSION_ID", "494"), ("RATING", "5")]),
        ({"SKIP": True, "NO": False}, [("SKIP", "1"), ("NO", "0")]),
        ({"A": None, "B": {}, "C": []}, []),  # PHP drops nulls and empty arrays
        ({"K": {"BUTTONS": [{"TEXT": "5"}]}}, [("K[BUTTONS][0][TEXT]", "5")]),
    ],
)
def test_flatten(data: dict[str, Any], pairs: list[tuple[str, str]]) -> None:
    assert flatten_form(data) == pairs


def test_encode_query_percent_encodes_text_and_writes_verbatim_leaves_as_given() -> None:
    query = encode_query(
        {"COMMENT": "Молодец & co", "ID": BatchRef("get", ("0", "ID")), "X": "$result[a]"},
        verbatim=lambda value: value.render() if isinstance(value, BatchRef) else None,
    )
    assert query.split("&")[0] == "COMMENT=%D0%9C%D0%BE%D0%BB%D0%BE%D0%B4%D0%B5%D1%86%20%26%20co"
    assert "ID=$result[get][0][ID]" in query
    assert "X=%24result%5Ba%5D" in query  # text is text, whatever it looks like
    assert dict(parse_qsl(query))["COMMENT"] == "Молодец & co"


_KEYS = st.text(st.characters(exclude_characters="[]", codec="utf-8"), min_size=1) | st.from_regex(
    r"[0-9]{1,4}",
    fullmatch=True,  # bot and command ids: must stay dictionary keys
)
_VALUES = st.text(st.characters(codec="utf-8"))
_FORMS = st.recursive(
    st.dictionaries(_KEYS, _VALUES, min_size=1),
    lambda children: st.dictionaries(_KEYS, _VALUES | children, min_size=1),
    max_leaves=30,
)


@given(form=_FORMS)
def test_flatten_then_unflatten_gives_the_form_back(form: dict[str, Any]) -> None:
    """Any nesting of non-empty tables of strings survives the round trip, numeric keys too."""
    assert unflatten_form(flatten_form(form)) == form


@given(form=_FORMS)
def test_the_round_trip_survives_url_encoding(form: dict[str, Any]) -> None:
    assert unflatten_form(parse_qsl(encode_query(form), keep_blank_values=True)) == form
