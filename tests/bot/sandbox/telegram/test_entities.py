"""Telegram's HTML and MarkdownV2 parsing: what it accepts, what it refuses (the 400 that
catches user text sent unescaped), and a fuzz of both."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.sandbox.telegram.entities import (
    ParseError,
    html_escape,
    markdown_v2_escape,
    parse_html,
    parse_markdown_v2,
    user_entities,
)


@pytest.mark.parametrize(
    ("html", "text", "entities"),
    [
        ("plain", "plain", []),
        ("<b>Сессия 494</b>: 5", "Сессия 494: 5", [{"type": "bold", "offset": 0, "length": 10}]),
        ("a &lt; b &amp;&amp; c &gt; d &quot;", 'a < b && c > d "', []),
        ("&#128512; <i>x</i>", "😀 x", [{"type": "italic", "offset": 3, "length": 1}]),
        ("&#x41;&nbsp;", "A&nbsp;", []),  # unknown named entities stay text
        ("AT&T", "AT&T", []),
        (
            '<a href="https://t.me/x?a=1&amp;b=2">link</a>',
            "link",
            [{"type": "text_link", "offset": 0, "length": 4, "url": "https://t.me/x?a=1&b=2"}],
        ),
        (
            '<span class="tg-spoiler">s</span>',
            "s",
            [{"type": "spoiler", "offset": 0, "length": 1}],
        ),
        ("<B>upper</B>", "upper", [{"type": "bold", "offset": 0, "length": 5}]),
        ("<b>x</>", "x", [{"type": "bold", "offset": 0, "length": 1}]),
        ("<b></b>empty", "empty", []),
    ],
)
def test_html_accepted(html: str, text: str, entities: list[dict[str, Any]]) -> None:
    assert parse_html(html) == (text, entities)


@pytest.mark.parametrize(
    ("html", "reason"),
    [
        ("5 < 4", 'Unsupported start tag "" at byte offset 2'),
        ("Молодец <3 всем", 'Unsupported start tag "3" at byte offset 15'),
        ("Молодец <3", "Unclosed start tag at byte offset 15"),
        ("<script>x</script>", 'Unsupported start tag "script" at byte offset 0'),
        ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("bold</b>", "Unexpected end tag at byte offset 4"),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        (
            "<b>x</strong>",
            'Unmatched end tag at byte offset 4, expected "</b>", found "</strong>"',
        ),
        ("<b", "Unclosed start tag at byte offset 0"),
        ("<b>x</b", "Unclosed end tag at byte offset 4"),
        ('<a href="x>y</a>', "Unclosed start tag at byte offset 0"),
        ('<span class="x">s</span>', 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ],
)
def test_html_refused(html: str, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_html(html)
    assert str(caught.value) == reason


@pytest.mark.parametrize(
    ("markdown", "text", "entities"),
    [
        ("Молодец\\.", "Молодец.", []),
        (
            "*b* _i_",
            "b i",
            [
                {"type": "bold", "offset": 0, "length": 1},
                {"type": "italic", "offset": 2, "length": 1},
            ],
        ),
        (
            "__u__ ||s||",
            "u s",
            [
                {"type": "underline", "offset": 0, "length": 1},
                {"type": "spoiler", "offset": 2, "length": 1},
            ],
        ),
        ("`a.b`", "a.b", [{"type": "code", "offset": 0, "length": 3}]),
        (
            "[t](https://x.y/\\))",
            "t",
            [{"type": "text_link", "offset": 0, "length": 1, "url": "https://x.y/)"}],
        ),
        (
            "```py\nx = 1\n```",
            "x = 1\n",
            [{"type": "pre", "offset": 0, "length": 6, "language": "py"}],
        ),
        (">q\n>r\nend", "q\nr\nend", [{"type": "blockquote", "offset": 0, "length": 3}]),
    ],
)
def test_markdown_v2_accepted(markdown: str, text: str, entities: list[dict[str, Any]]) -> None:
    assert parse_markdown_v2(markdown) == (text, entities)


@pytest.mark.parametrize(
    ("markdown", "reason"),
    [
        ("Молодец.", "Character '.' is reserved and must be escaped with the preceding '\\'"),
        ("5-4", "Character '-' is reserved and must be escaped with the preceding '\\'"),
        ("*bold", "Can't find end of Bold entity at byte offset 0"),
        ("ок _курсив", "Can't find end of Italic entity at byte offset 5"),
        ("[t](https://x", "Can't find end of a URL at byte offset 4"),
    ],
)
def test_markdown_v2_refused(markdown: str, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_markdown_v2(markdown)
    assert str(caught.value) == reason


@pytest.mark.parametrize(
    ("typed", "commands"),
    [
        ("/rate 494 5 Молодец", ["/rate"]),
        ("/rate@SandboxRatingBot 494 5", ["/rate@SandboxRatingBot"]),
        ("see /help, then /rate", ["/help", "/rate"]),
        ("a/b and http://x/y", []),
        ("😀 /start", ["/start"]),
    ],
)
def test_bot_commands_are_found_in_user_text(typed: str, commands: list[str]) -> None:
    found = user_entities(typed)
    units = typed.encode("utf-16-le")
    assert [
        units[2 * e["offset"] : 2 * (e["offset"] + e["length"])].decode("utf-16-le") for e in found
    ] == commands
    assert {e["type"] for e in found} <= {"bot_command"}


@given(st.text())
def test_html_never_crashes(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_html(text)


@given(st.text())
def test_markdown_v2_never_crashes(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_markdown_v2(text)


@given(st.text())
def test_escaped_html_is_always_accepted_and_kept(text: str) -> None:
    assert parse_html(html_escape(text)) == (text, [])


@given(st.text())
def test_escaped_markdown_v2_is_always_accepted_and_kept(text: str) -> None:
    assert parse_markdown_v2(markdown_v2_escape(text)) == (text, [])


@given(st.text(), st.text())
def test_escaped_text_inside_tags_is_one_entity(before: str, inside: str) -> None:
    text, entities = parse_html(f"{html_escape(before)}<b>{html_escape(inside)}</b>")
    assert text == before + inside
    assert len(entities) == (1 if inside else 0)
