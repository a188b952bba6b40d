"""Properties of the grammar that must hold for any input whatsoever (hypothesis)."""

from __future__ import annotations

import re

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
# that token would be read as the rating (the grammar's documented rule).
_RATING_SHAPED = re.compile(r"[+-]?[0-9]+([.,/][0-9]+)?|(?:[★☆]|⭐\ufe0f?)+")
_BLANK = re.compile(r"[\s\u200b\u2060\ufeff]*")
_TOKEN = re.compile(r"[^\s\u200b\u2060\ufeff]+")


def _first_token(text: str) -> str:
    match = _TOKEN.search(text)
    return match.group() if match else ""


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
        assume(not _RATING_SHAPED.fullmatch(_first_token(command.comment or "")))
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
