"""User texts: two languages, the same parameters in both, and the language choice."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import errors
from bot.markup import JOINER
from bot.texts import TEXTS, TOKEN_LIMIT, Lang, pick_language, render
from tests.bbcodes import HOSTILE, live_markup


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
        for example in ("/rate 494 5", "/rate 494", "#494", "★★★★★"):
            assert example in help_text
        # The alias is a text of its own, added only where it works (tests/handlers/test_help.py).
        assert "/оценка" not in help_text
        assert "/оценка" in render("help.alias", lang)


@pytest.mark.parametrize(
    ("key", "params"),
    [
        ("parse.unknown_command", {"command": "/[USER=1]"}),
        ("parse.invalid_session", {"token": "1[SEND=/rate 1 1]x[/SEND]"}),
        ("parse.rating_out_of_range", {"token": "7", "example": "/rate 494 5 [URL=https://x]a"}),
        ("rate.comment", {"comment": "[/CODE][CALL]123[/CALL]\n>>quote"}),
        ("rate.saved", {"session": 494, "rating": "★★★★★ 5/5", "comment": "[PUT=/x]y[/PUT]"}),
    ],
)
def test_every_string_parameter_is_shown_as_plain_text(
    key: str, params: dict[str, str | int]
) -> None:
    for lang in ("ru", "en"):
        text = render(key, lang, **params)
        assert live_markup(text) == []
        assert text.replace(JOINER, "") == TEXTS[key][lang].format_map(params)


def test_our_own_templates_keep_their_markup() -> None:
    assert live_markup(render("help", "en")) == ["[b]", "[/b]"]


def test_a_text_rendered_into_another_keeps_one_mark_per_bracket() -> None:
    comment = render("rate.comment", "en", comment="[USER=1]")
    saved = render("rate.saved", "en", session=494, rating="★ 1/5", comment=comment)
    assert saved == f"✅ Saved. Session 494: ★ 1/5, comment “[{JOINER}USER=1]”."


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("parse.unknown_command", "command"),
        ("parse.invalid_session", "token"),
        ("parse.rating_or_session", "token"),
    ],
)
def test_a_quoted_token_is_cut_to_a_sane_length(key: str, name: str) -> None:
    token = "/rat" + "[" * 10_000
    params = {"example": "/rate 5", "session_example": "/rate #7", name: token}
    text = render(key, "en", **params)
    assert f"{'[' + JOINER}" * (TOKEN_LIMIT - 4) + "…" in text
    assert len(text.replace(JOINER, "")) < len(TEXTS[key]["en"]) + 2 * (TOKEN_LIMIT + 1)
    assert live_markup(text) == []


_USER_TEXT = st.one_of(
    st.text(),
    st.lists(st.sampled_from([*HOSTILE, "[", ">", "-", "&", "#91;", JOINER])).map("".join),
)
_KEYS_WITH_PARAMETERS = sorted(key for key in TEXTS if _fields(TEXTS[key]["en"]))


@settings(max_examples=500)
@given(
    key=st.sampled_from(_KEYS_WITH_PARAMETERS), lang=st.sampled_from(["ru", "en"]), data=st.data()
)
def test_no_user_text_in_any_parameter_makes_a_live_tag(
    key: str, lang: Lang, data: st.DataObject
) -> None:
    params = {name: data.draw(_USER_TEXT, label=name) for name in _fields(TEXTS[key][lang])}
    assert live_markup(render(key, lang, **params)) == []
