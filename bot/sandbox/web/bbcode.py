"""Message text to HTML for the chat page, as the Bitrix24 messenger shows it, safely.

Bitrix24 renders BB-codes in every message (protocol notes §00 item 4): `[b]`, `[url=…]`,
`[user=ID]`, `[send=…]` and the rest. The page shows them the same way, so a reply the bot
neutralised (`bot/markup.py`) reads as plain text here too, and one it did not is visibly live.

Safety comes from the order: the whole text is HTML-escaped first, and only then are known
tags turned into a fixed set of elements whose attributes come from values checked against a
pattern (a link only http(s), a colour only a name or #hex). Nothing a user wrote can become an
element, an attribute or a script; a tag whose value fails its check stays literal text. No
element carries a `style`: the page's policy refuses inline styles, so a colour and a size go
in data attributes, which chat.js applies through the DOM.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Final

_URL: Final = re.compile(r"https?://[^\s\x00-\x1f\x7f\"'<>`\\]+", re.IGNORECASE)
_COLOR: Final = re.compile(r"#[0-9a-f]{3}|#[0-9a-f]{6}|[a-z]{3,20}", re.IGNORECASE)
_SIZE: Final = re.compile(r"[0-9]{1,2}")
_MENTION: Final = re.compile(r"[0-9]{1,10}|all", re.IGNORECASE)
_CODE: Final = re.compile(r"\[code\](.*?)\[/code\]", re.IGNORECASE | re.DOTALL)
_QUOTE: Final = re.compile(r"^[^\S\n]*&gt;&gt;(.*)$", re.MULTILINE)
_BR: Final = re.compile(r"\[br\]", re.IGNORECASE)
_LARGEST: Final = 30  # px: a [size] larger than this is drawn at this size


def _pair(name: str, *, valued: bool = False) -> re.Pattern[str]:
    value = r"=([^\]\n]{1,300})" if valued else ""
    return re.compile(rf"\[{name}{value}\](.*?)\[/{name}\]", re.IGNORECASE | re.DOTALL)


def _attribute(plain: str) -> str:
    """A value for a double-quoted attribute: whatever it holds, it cannot close the quote."""
    return html.escape(plain, quote=True)


Wrap = Callable[[str, str], str]  # (checked, escaped value; inner HTML) -> element


def _link(value: str, inner: str) -> str:
    return f'<a href="{value}" target="_blank" rel="noopener noreferrer nofollow">{inner}</a>'


def _bare_link(match: re.Match[str]) -> str:
    """`[url]https://…[/url]`: the text is the address."""
    target = html.unescape(match.group(1)).strip()
    if not _URL.fullmatch(target):
        return match.group()
    return _link(_attribute(target), match.group(1))


def _valued(pattern: re.Pattern[str], wrap: Wrap) -> Callable[[re.Match[str]], str]:
    """A replacement for `[tag=value]inner[/tag]`: the value checked against `pattern` (else
    the tag stays literal text), escaped for its attribute, the inner text wrapped."""

    def replace(match: re.Match[str]) -> str:
        value = html.unescape(match.group(1)).strip()
        if not pattern.fullmatch(value):
            return match.group()
        return wrap(_attribute(value), match.group(2))

    return replace


def _sized(value: str, inner: str) -> str:
    return f'<span class="bb-size" data-size="{min(int(value), _LARGEST)}">{inner}</span>'


_ANY: Final = re.compile(r".+", re.DOTALL)
_VALUED: Final[tuple[tuple[str, re.Pattern[str], Wrap], ...]] = (
    ("url", _URL, _link),
    ("user", _MENTION, lambda v, i: f'<span class="bb-mention" data-user="{v}">{i}</span>'),
    ("chat", _MENTION, lambda v, i: f'<span class="bb-mention" data-chat="{v}">{i}</span>'),
    # [send=…] posts its command when clicked, [put=…] puts it into the input.
    ("send", _ANY, lambda v, i: f'<a href="#" class="bb-send" data-send="{v}">{i}</a>'),
    ("put", _ANY, lambda v, i: f'<a href="#" class="bb-put" data-put="{v}">{i}</a>'),
    ("color", _COLOR, lambda v, i: f'<span class="bb-color" data-color="{v}">{i}</span>'),
    ("size", _SIZE, _sized),
)
_RULES: Final = (
    *((_pair(name, valued=True), _valued(check, wrap)) for name, check, wrap in _VALUED),
    (_pair("url"), _bare_link),
)
_SIMPLE: Final = tuple((_pair(tag), f"<{tag}>\\1</{tag}>") for tag in ("b", "i", "u", "s"))


def render(text: str) -> str:
    """`text` as safe HTML: escaped, then its BB-codes rendered; `[code]` shields its content."""
    escaped = html.escape(text, quote=True)
    parts: list[str] = []
    last = 0
    for block in _CODE.finditer(escaped):
        parts.append(_render_tags(escaped[last : block.start()]))
        parts.append(f"<code>{block.group(1)}</code>")
        last = block.end()
    parts.append(_render_tags(escaped[last:]))
    return "".join(parts).replace("\n", "<br>")


def _render_tags(escaped: str) -> str:
    out = escaped
    for pattern, replace in _RULES:
        out = pattern.sub(replace, out)
    for pattern, replacement in _SIMPLE:
        out = pattern.sub(replacement, out)
    out = _QUOTE.sub(r"<blockquote>\1</blockquote>", out)
    return _BR.sub("<br>", out)
