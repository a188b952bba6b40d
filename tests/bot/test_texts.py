"""User texts: two languages, the same parameters in both, and the language choice."""

from __future__ import annotations

import string

import pytest

from bot import errors
from bot.texts import TEXTS, Lang, pick_language, render


@pytest.mark.parametrize(
    ("code", "lang"),
    [
        ("ru", "ru"),
        ("RU", "ru"),
        ("ru-RU", "ru"),
        ("ru_RU", "ru"),
        (" ru ", "ru"),
        ("en", "en"),
        ("de", "en"),
        ("ua", "en"),
        ("xx", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_russian_portals_get_russian_and_everyone_else_english(
    code: str | None, lang: Lang
) -> None:
    assert pick_language(code) == lang


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("key", sorted(TEXTS))
def test_every_text_exists_in_both_languages_with_the_same_parameters(key: str) -> None:
    assert set(TEXTS[key]) == {"ru", "en"}
    assert _fields(TEXTS[key]["ru"]) == _fields(TEXTS[key]["en"])


def _user_facing_errors() -> list[type[errors.UserFacingError]]:
    found = []
    for value in vars(errors).values():
        is_error = isinstance(value, type) and issubclass(value, errors.UserFacingError)
        if is_error and "text_key" in vars(value):
            found.append(value)
    return found


@pytest.mark.parametrize("error", _user_facing_errors(), ids=lambda e: e.__name__)
def test_every_user_facing_error_has_a_text(error: type[errors.UserFacingError]) -> None:
    assert error.text_key in TEXTS


@pytest.mark.parametrize(
    ("lang", "expected"), [("ru", "12\u00a0345 символов"), ("en", "12,345 characters")]
)
def test_counts_are_grouped_the_way_each_language_writes_them(lang: Lang, expected: str) -> None:
    text = render("parse.comment_too_long", lang, length=12345, limit=10000, example="/rate 1 5")
    assert expected in text


def test_a_supervisor_s_words_are_filled_in_and_never_read_as_a_template() -> None:
    text = render("parse.unknown_command", "en", command="/{oops}{0}")
    assert text == "Unknown command /{oops}{0}. The list of commands: /help"


def test_help_shows_the_syntax_in_both_languages() -> None:
    for lang in ("ru", "en"):
        help_text = render("help", lang)
        for example in ("/rate 494 5", "/rate 494", "#494", "★★★★★", "/оценка"):
            assert example in help_text
