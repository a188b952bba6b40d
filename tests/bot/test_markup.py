"""User text in a bot message is shown as written and never rendered as Bitrix24 markup."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.markup import JOINER, neutralise, shorten
from tests.bbcodes import HOSTILE, live_markup, open_bidi


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_is_live_as_written_and_inert_once_neutralised(text: str) -> None:
    assert live_markup(text)
    assert live_markup(neutralise(text)) == []


@pytest.mark.parametrize("text", HOSTILE)
def test_neutralising_only_adds_invisible_marks(text: str) -> None:
    assert neutralise(text).replace(JOINER, "") == text


@pytest.mark.parametrize("text", [*HOSTILE, "Молодец", "a > b - c & d"])
def test_neutralising_twice_changes_nothing(text: str) -> None:
    assert neutralise(neutralise(text)) == neutralise(text)


@pytest.mark.parametrize("text", ["Молодец", "5 > 4 - 1", "R&D", "x [ y", "a]b", "👍🏻"])
def test_plain_text_stays_plain(text: str) -> None:
    assert live_markup(neutralise(text)) == []
    assert neutralise(text).replace(JOINER, "") == text


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("Молодец", 30, "Молодец"),
        ("ж" * 30, 30, "ж" * 30),
        ("ж" * 31, 30, "ж" * 30 + "…"),
        ("слово " * 10, 30, ("слово " * 5).rstrip() + "…"),
        # A tag at the cut: the cut lands after the mark, never between `[` and its mark.
        ("ж" * 29 + "[USER=1]", 30, "ж" * 29 + f"[{JOINER}…"),
        ("ж" * 28 + "[USER=1]", 30, "ж" * 28 + f"[{JOINER}U…"),
        ("ж" * 29 + ">>q", 30, "ж" * 29 + f">{JOINER}…"),
        ("x" * 299 + "[URL=https://x]a[/URL]", 300, "x" * 299 + f"[{JOINER}…"),
        # Marks do not count: 40 brackets stay 40 visible brackets.
        ("[" * 41, 40, f"[{JOINER}" * 40 + "…"),
    ],
)
def test_shorten_neutralises_then_cuts(text: str, limit: int, expected: str) -> None:
    assert shorten(text, limit) == expected


_PIECES = st.sampled_from(
    [
        "[", "]", "/", "=", ">", ">>", "-", "-" * 27, "&", "#", "91;", "\n", " ", JOINER, "5",
        "user", "USER", "Url", "send", "code", "img", "b", "br", "=1", "https://x", "|all",
        "[USER=1]", "[/CODE]", "&#91;", "&lbrack;", "gt", "lbrack", ";", "x5b", "Молодец", "👍🏻",
        "\u202e", "\u202b", "\u2067", "\u2068", "\u202c", "\u2069", "\u200f",
    ]
)  # fmt: skip
_MARKUP_TEXT = st.one_of(st.text(), st.lists(_PIECES, max_size=30).map("".join))


@settings(max_examples=1500)
@given(text=_MARKUP_TEXT, limit=st.integers(0, 60))
def test_no_text_keeps_live_markup(text: str, limit: int) -> None:
    safe = neutralise(text)
    assert live_markup(safe) == []
    assert open_bidi(safe) == 0
    assert neutralise(safe) == safe
    # Only invisible marks are added: joiners, and the closers of bidi controls left open.
    added = safe.replace(JOINER, "").removeprefix(text.replace(JOINER, ""))
    assert set(added) <= set(CLOSERS)
    short = shorten(text, limit)
    assert live_markup(short) == []
    assert open_bidi(short) == 0
    assert len([c for c in short if c not in JOINER + CLOSERS]) <= limit + 1


CLOSERS = "\u202c\u2069"  # PDF and PDI


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\u202eцедолом", "\u202eцедолом\u202c"),  # RLO ... PDF
        ("\u2067\u202ex", "\u2067\u202ex\u202c\u2069"),  # RLI RLO ... PDF PDI
        ("\u2067\u202ex\u2069", "\u2067\u202ex\u2069"),  # a PDI closes what it holds
        ("\u202ex\u202c", "\u202ex\u202c"),
        ("\u202c\u202ex", "\u202c\u202ex\u202c"),  # a closer before its opener closes nothing
        ("\u202ex\ny", "\u202ex\ny"),  # a new paragraph starts afresh
        ("\u200fRLM", "\u200fRLM"),  # a mark opens nothing
    ],
)
def test_bidi_controls_a_user_opened_are_closed_where_their_text_ends(
    text: str, expected: str
) -> None:
    assert neutralise(text) == expected


def test_a_cut_closes_what_it_leaves_open() -> None:
    assert shorten("\u202e" + "ж" * 10 + "\u202c", 3) == "\u202eжж\u202c…"
