"""Properties of the grammar that must hold for any input whatsoever (hypothesis)."""

from __future__ import annotations

import re
import sys
import unicodedata

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bot.commands import (
    MAX_COMMENT_LENGTH,
    MAX_SESSION_ID,
    Command,
    HelpCommand,
    RateCommand,
    RatePrompt,
    format_command,
    parse_command,
)
from bot.errors import CommandParseError
from bot.texts import render

# Pieces a supervisor (or a cat on the keyboard) might type, so random texts hit the grammar's
# corners far more often than uniform text would.
_PIECES = st.sampled_from(
    [
        "/rate", "/RATE", "/оценка", "/rate@Bot", "/help", "/start", "/помощь", "/", "/x",
        "494", "#494", "№494", "#", "№", "0", "00", "5", "7", "-1", "+3", "4.5", "4,5", "5/5",
        "6/5", "3/10", "0/0", "★", "★★★★★", "★★★★★★", "☆", "⭐", "⭐\ufe0f", "2147483647",
        "2147483648", "9" * 40, "Молодец", "ok", "👍🏻", "[b]", "{x}", "{}", "%s", "\\",
    ]
)  # fmt: skip
_SEPARATORS = st.sampled_from([" ", "  ", "\t", "\n", "\u00a0", "\u202f", "\u200b", "\ufeff", ""])
_GRAMMAR_TEXT = st.lists(st.tuples(_PIECES, _SEPARATORS), max_size=8).map(
    lambda pairs: "".join(piece + sep for piece, sep in pairs)
)
_ANY_TEXT = st.one_of(st.text(), _GRAMMAR_TEXT, st.builds(lambda t: "/rate " + t, st.text()))
_CHAT_SESSION = st.one_of(st.none(), st.integers(1, MAX_SESSION_ID))


@settings(max_examples=1500)
@given(text=_ANY_TEXT, chat_session_id=_CHAT_SESSION)
def test_any_text_parses_or_raises_a_parse_error_that_renders(
    text: str, chat_session_id: int | None
) -> None:
    """No input raises anything but our parse error, and every error has a text in ru and en."""
    try:
        parse_command(text, chat_session_id=chat_session_id)
    except CommandParseError as error:
        for lang in ("ru", "en"):
            assert render(error.text_key, lang, **error.params)


# A comment-only command whose comment starts with something rating-shaped cannot be written:
# that token would be read as the rating (the grammar's documented rule), whatever script or
# form its digits are written in.
_RATING_SHAPED = re.compile(r"[+-]?[0-9]+([.,/][0-9]+)?|(?:[★☆]|⭐\ufe0f?)+")
_BLANK = re.compile(r"[\s\u200b\u2060\ufeff]*")
_TOKEN = re.compile(r"[^\s\u200b\u2060\ufeff]+")
# Every character that is a digit in some script or form, and the keycap marks.
_ANY_DIGIT = [
    chr(c) for c in range(sys.maxunicode + 1) if unicodedata.digit(chr(c), None) is not None
]


def _first_token(text: str) -> str:
    match = _TOKEN.search(text)
    return match.group() if match else ""


def _may_read_as_a_number(token: str) -> bool:
    """Whether the grammar may take a token for a number: rating-shaped, or holding a digit or
    number of any script or form, or the keycap ten (a generous over-approximation); or made
    of invisible characters alone, or rating-shaped once they are left out (refused: they
    would hide the number)."""
    folded = unicodedata.normalize("NFKC", token)
    visible = "".join(c for c in token if unicodedata.category(c) != "Cf")
    return (
        not visible
        or bool(_RATING_SHAPED.fullmatch(visible))
        or bool(_RATING_SHAPED.fullmatch(token))
        or any(unicodedata.numeric(char, None) is not None for char in token + folded)
        or "\U0001f51f" in token
    )


_COMMENTS = st.text(min_size=1, max_size=200) | st.text(min_size=1, max_size=40).map(
    # Comments at the length limit, built by repetition (hypothesis draws short texts only).
    lambda text: (text * (MAX_COMMENT_LENGTH // len(text) + 1))[:MAX_COMMENT_LENGTH]
)


@st.composite
def _commands(draw: st.DrawFn) -> Command:
    session_id = draw(st.integers(1, MAX_SESSION_ID))
    kind = draw(st.sampled_from(["rate", "prompt", "help"]))
    if kind == "help":
        return HelpCommand(welcome=draw(st.booleans()))
    if kind == "prompt":
        return RatePrompt(session_id=session_id)
    rating = draw(st.none() | st.integers(1, 5))
    comment = draw(st.none() | _COMMENTS)
    assume(comment is None or not _BLANK.fullmatch(comment))
    assume(rating is not None or comment is not None)
    command = RateCommand(session_id=session_id, rating=rating, comment=comment)
    if command.rating is None:
        assume(not _may_read_as_a_number(_first_token(command.comment or "")))
    return command


@settings(max_examples=500)
@given(command=_commands())
def test_format_then_parse_gives_the_command_back(command: Command) -> None:
    assert parse_command(format_command(command)) == command


@settings(max_examples=300)
@given(command=_commands(), chat_session_id=st.integers(1, MAX_SESSION_ID))
def test_a_marked_session_means_the_same_in_any_chat(
    command: Command, chat_session_id: int
) -> None:
    text = format_command(command, session="marked")
    assert parse_command(text, chat_session_id=chat_session_id) == command


_DIGIT_TOKENS = st.lists(
    st.tuples(st.sampled_from(_ANY_DIGIT), st.sampled_from(["", "\ufe0f\u20e3", "\u20e3"])),
    min_size=1,
    max_size=12,
).map(lambda pairs: "".join(digit + keycap for digit, keycap in pairs))


@settings(max_examples=1000)
@given(
    token=_DIGIT_TOKENS,
    before=st.sampled_from(["/rate 494 ", "/rate ", "/rate #494 ", "/оценка 7 "]),
    after=st.sampled_from(["", " Молодец", " 5", "\nвторая строка"]),
    chat_session_id=_CHAT_SESSION,
)
def test_digits_of_any_script_are_never_stored_as_a_comment(
    token: str, before: str, after: str, chat_session_id: int | None
) -> None:
    """A token of digits (any script, any form, keycaps) means a number or is refused."""
    try:
        command = parse_command(before + token + after, chat_session_id=chat_session_id)
    except CommandParseError:
        return
    if isinstance(command, RateCommand) and command.comment is not None:
        assert not command.comment.startswith(token)
