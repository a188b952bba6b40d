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
