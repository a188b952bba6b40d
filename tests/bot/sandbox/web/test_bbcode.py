"""The chat page draws BB-codes as Bitrix24 does, and no text ever becomes live HTML."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.markup import neutralise
from bot.sandbox.web.bbcode import render
from tests.bbcodes import HOSTILE

# Every element the renderer may produce, with the attributes each may carry.
ALLOWED: dict[str, set[str]] = {
    "b": set(),
    "i": set(),
    "u": set(),
    "s": set(),
    "br": set(),
    "code": set(),
    "blockquote": set(),
    "a": {"href", "target", "rel", "class", "data-send", "data-put"},
    # No "style": the page's policy refuses inline styles; chat.js applies data-color/-size.
    "span": {"class", "data-user", "data-chat", "data-color", "data-size"},
}
COLOR = re.compile(r"#[0-9a-f]{3}|#[0-9a-f]{6}|[a-z]{3,20}", re.IGNORECASE)


class Elements(HTMLParser):
    """The elements and attributes of an HTML fragment, as a browser would parse them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def elements(fragment: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(fragment)
    parser.close()
    return parser.found


def assert_inert(fragment: str) -> None:
    """Only the renderer's own elements, links only to http(s), styles only colour and size."""
    for tag, attrs in elements(fragment):
        assert tag in ALLOWED, (tag, fragment)
        assert set(attrs) <= ALLOWED[tag], (tag, attrs, fragment)
        href = attrs.get("href")
        assert href in (None, "#") or href.lower().startswith(("http://", "https://")), href
        color, size = attrs.get("data-color"), attrs.get("data-size")
        assert color is None or COLOR.fullmatch(color), color
        assert size is None or (size.isdigit() and int(size) <= 30), size
        if tag == "a" and href != "#":
            assert attrs["rel"] == "noopener noreferrer nofollow"


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("просто текст", "просто текст"),
        ("[b]жирный[/b] [I]курсив[/I]", "<b>жирный</b> <i>курсив</i>"),
        ("[u]u[/u][s]s[/s]", "<u>u</u><s>s</s>"),
        ("строка\nстрока", "строка<br>строка"),
        ("a[br]b", "a<br>b"),
        (
            "[url=https://example.org/a?b=1&c=2]ссылка[/url]",
            (
                '<a href="https://example.org/a?b=1&amp;c=2" target="_blank" '
                'rel="noopener noreferrer nofollow">ссылка</a>'
            ),
        ),
        (
            "[URL]https://example.org[/URL]",
            (
                '<a href="https://example.org" target="_blank" '
                'rel="noopener noreferrer nofollow">https://example.org</a>'
            ),
        ),
        ("[USER=1]Анна[/USER]", '<span class="bb-mention" data-user="1">Анна</span>'),
        (
            "[SEND=/rate 494 5]Пять[/SEND]",
            '<a href="#" class="bb-send" data-send="/rate 494 5">Пять</a>',
        ),
        (
            "[put=/rate 494]оценить[/put]",
            '<a href="#" class="bb-put" data-put="/rate 494">оценить</a>',
        ),
        (
            "[color=#ff0000]красный[/color]",
            '<span class="bb-color" data-color="#ff0000">красный</span>',
        ),
        ("[size=99]огромный[/size]", '<span class="bb-size" data-size="30">огромный</span>'),
        ("[code][b]как есть[/b][/code]", "<code>[b]как есть[/b]</code>"),
        (">>цитата\nответ", "<blockquote>цитата</blockquote><br>ответ"),
        # Not closed, or not a tag the messenger knows: left as written.
        ("[b]не закрыт", "[b]не закрыт"),
        ("[marquee]x[/marquee]", "[marquee]x[/marquee]"),
    ],
)
def test_bb_codes_are_drawn_as_the_messenger_draws_them(text: str, html: str) -> None:
    assert render(text) == html


@pytest.mark.parametrize(
    ("attack", "shown"),
    [
        ("<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)&gt;"),
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("[url=javascript:alert(1)]x[/url]", "[url=javascript:alert(1)]x[/url]"),
        ("[url]javascript:alert(1)[/url]", "[url]javascript:alert(1)[/url]"),
        ("[url=JaVaScRiPt:alert(1)]x[/url]", "[url=JaVaScRiPt:alert(1)]x[/url]"),
        ("[url=data:text/html,<b>x]y[/url]", "[url=data:text/html,&lt;b&gt;x]y[/url]"),
        ("[url=&#106;avascript:alert(1)]x[/url]", "[url=&amp;#106;avascript:alert(1)]x[/url]"),
        (
            '[url=https://x" onmouseover="alert(1)]x[/url]',
            "[url=https://x&quot; onmouseover=&quot;alert(1)]x[/url]",
        ),
        (
            '[color=red" onclick="alert(1)]x[/color]',
            "[color=red&quot; onclick=&quot;alert(1)]x[/color]",
        ),
        ("[color=red;background:url(https://x)]x[/color]", None),
        ("[size=10px;position:fixed]x[/size]", None),
        ("[user=1 onclick=alert(1)]x[/user]", None),
        ('[send=x" onclick="alert(1)]x[/send]', None),
        ("[send=[url]https://x[/url]]y[/send]", None),
        ("[code]</code><img src=x onerror=alert(1)>[/code]", None),
        ("[b]<img src=x onerror=alert(1)>[/b]", "<b>&lt;img src=x onerror=alert(1)&gt;</b>"),
        ("&lt;img src=x onerror=alert(1)&gt;", "&amp;lt;img src=x onerror=alert(1)&amp;gt;"),
    ],
)
def test_an_attack_in_a_message_stays_text(attack: str, shown: str | None) -> None:
    html = render(attack)
    assert_inert(html)
    if shown is not None:
        assert html == shown
    # What the text meant to run never becomes an attribute a browser would act on.
    for _tag, attrs in elements(html):
        assert not any(name.startswith("on") for name in attrs)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_what_the_bot_neutralised_is_drawn_as_plain_text(hostile: str) -> None:
    """A reply quoting a user's text shows it as written: no element but line breaks."""
    assert {tag for tag, _ in elements(render(neutralise(hostile)))} <= {"br"}


# Pieces of markup, HTML and attack, in any order: what a fuzzing attacker would type.
PIECES = st.sampled_from(
    [
        *"[]=/\"'<>&#;: \nabx1",
        *("url", "send", "put", "color", "size", "user", "code", "b"),
        *("javascript:", "https://", "onerror", "&quot;", "&lt;", "&#34;", ">>"),
    ]
)


@given(st.lists(PIECES, max_size=40).map("".join))
def test_no_text_renders_to_anything_but_the_renderers_own_elements(text: str) -> None:
    assert_inert(render(text))
