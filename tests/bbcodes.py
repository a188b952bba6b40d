"""An independent checker for markup Bitrix24 would render live in a bot's message.

Written from the protocol notes (§00 item 4, §6.10) and the tag patterns of the mirrored
`Bitrix\\Im\\Text` (which adds RATING, ATTACH, DIALOG, PCH and the 54-dash quote block), NOT
from the product's neutraliser, so a test can hold the product to it. Tags are
case-insensitive; a tag is live when its name follows `[` (or `[/`) directly and its bracket
closes. A text is checked as sent and with its HTML entities decoded (`&#91;` is `[`).
"""

from __future__ import annotations

import html
import re
from typing import Final

LIVE_TAGS: Final = (
    # §00 item 4 / §6.10
    "b", "i", "u", "s", "size", "color", "url", "user", "chat", "context", "code", "img",
    "icon", "put", "send", "call", "timestamp", "disk", "br",
    # Bitrix\Im\Text (mirrored source)
    "rating", "attach", "dialog", "pch", "quote",
)  # fmt: skip

_NAMES = "|".join(sorted(LIVE_TAGS, key=len, reverse=True))
_TAG: Final = re.compile(rf"\[/?(?:{_NAMES})(?:[=\s|][^\]]*)?\]", re.IGNORECASE)
_QUOTE: Final = re.compile(r"^[^\S\n]*>>", re.MULTILINE)
_QUOTE_BLOCK: Final = re.compile(r"-{54}")


def live_markup(text: str) -> list[str]:
    """Every live tag, quote and quote block in `text`: empty when it is all plain text."""
    found: list[str] = []
    for variant in dict.fromkeys((text, html.unescape(text))):
        for pattern in (_TAG, _QUOTE, _QUOTE_BLOCK):
            found += (match.group() for match in pattern.finditer(variant))
    return found


# What a user (or anyone editing a comment in the portal's UI) might write to make the bot
# ping, link, post a clickable command, show an image, quote, or break out of a code block.
HOSTILE: Final[list[str]] = [
    "[USER=1]",
    "[user=all]",
    "[USER=1][/USER]",
    "[url=https://x]a[/url]",
    "[URL]https://evil.example[/URL]",
    "[SEND=/rate 1 1]x[/SEND]",
    "[PUT=/rate 494 1 плохо]Нажми[/PUT]",
    "[CHAT=5]чат[/CHAT]",
    "[CALL]123[/CALL]",
    "[CALL=+79990000000]позвонить[/CALL]",
    "[IMG]https://x/a.png [/IMG]",
    "[img size=large]https://x/a.png [/img]",
    "[DISK=1]",
    "[CODE]x[/CODE]",
    "[/CODE][USER=1]",
    "[b]жирный[/b] [i]i[/i] [u]u[/u] [s]s[/s]",
    "[size=30]big[/size][color=#ff0000]red[/color]",
    "[ICON=https://x/i.png size=20 title=t]",
    "[TIMESTAMP=1700000000 FORMAT=SHORT_TIME_FORMAT]",
    "[context=chat1/2]c[/context][DIALOG=chat1]d[/DIALOG]",
    "[RATING=5][ATTACH=1][PCH=1]p[/PCH][BR]",
    "[UsEr=1]MiXeD[/uSeR]",
    "[[USER=1]]",
    "[b][url=https://x][USER=1]nested[/USER][/url][/b]",
    ">>quote",
    "first line\n>>second line",
    "  >>indented",
    "-" * 54 + "\nquoted\n" + "-" * 54,
    "&#91;USER=1&#93;",
    "&#x5b;USER=1]",
    "&lbrack;USER=1&rbrack;",
    "&#91USER=1]",
    "&gt;&gt;quote",
    "&gt&gtquote",
]


# Bidi controls that stay in force until closed or until the paragraph ends (Unicode UAX #9):
# embeddings and overrides (LRE, RLE, LRO, RLO) are closed by PDF, isolates (LRI, RLI, FSI) by
# PDI, which also closes the embeddings opened inside the isolate. A user's RLO left open
# reverses the bot's own text after the quote.
_EMBEDDINGS: Final = "\u202a\u202b\u202d\u202e"
_ISOLATES: Final = "\u2066\u2067\u2068"


def open_bidi(text: str) -> int:
    """How many bidi embeddings, overrides and isolates are still open at the end of `text`'s
    last line."""
    stack: list[str] = []  # "e" for an embedding or override, "i" for an isolate
    for char in text.rsplit("\n", 1)[-1]:
        if char in _EMBEDDINGS or char in _ISOLATES:
            stack.append("e" if char in _EMBEDDINGS else "i")
        elif char == "\u202c" and stack and stack[-1] == "e":
            stack.pop()
        elif char == "\u2069" and "i" in stack:
            while stack.pop() != "i":
                pass
    return len(stack)
