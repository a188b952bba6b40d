"""User text inside a bot message: shown as written, never read as Bitrix24 markup.

Bitrix24 renders BB-codes in a bot's message, case-insensitively, and has no escape: `[USER=1]`
pings user 1, `[SEND=…]`/`[PUT=…]` become clickable commands, `[URL=…]` a link, `>>` a quote,
and a `[/CODE]` breaks out of `[CODE]` (protocol notes §00 item 4). So every piece of text a
user wrote (a comment, a quoted token, a command name, the stored comment anyone may have typed
in the portal's UI) goes through `neutralise` before it is put into a reply.

The technique: a WORD JOINER (U+2060) after every `[`, between two `>` or two `-` in a row, and
after an `&` that starts an HTML entity (`&#91;` is `[`). Every tag pattern needs its name right
after `[` (`\\[USER=`, `\\[SEND`, …: `Bitrix\\Im\\Text` in the mirrored source), a quote needs
`>>`, a quote block 54 dashes in a row; the joiner breaks each of them and is invisible, so
the supervisor reads exactly what was written. Why a word joiner: it has no width and, unlike a
zero-width joiner, does not change how neighbouring letters are shaped (Arabic, Indic scripts,
emoji sequences); a full-width `［` would be visible.
[UNCONFIRMED] that a real portal keeps U+2060 in a bot's message and does not strip it before
the BB-code parser runs (the mirrored `Im\\Text::parse` strips only \\x01, \\x02, \\v and \\f),
and that every client (web, desktop, mobile) draws it as nothing.

`neutralise` is idempotent: a neutralised text is left as it is, so texts rendered into texts
never stack marks. `shorten` neutralises first and cuts afterwards, so a cut can neither split
a tag open nor separate a mark from the `[` it protects; the bidi controls the cut leaves open
are closed after it.
"""

from __future__ import annotations

import re
from typing import Final

JOINER: Final = "\u2060"
ELLIPSIS: Final = "…"

# `[` not already followed by the joiner; `>>` and `--` pairs; an `&` that may start an entity
# (`&#91;`, `&lbrack;`, and `&gt` even without its `;`).
_LIVE: Final = re.compile(rf"\[(?!{JOINER})|([>-])(?=\1)|&(?=[#A-Za-z])")


# Bidi embeddings and overrides (closed by PDF) and isolates (closed by PDI) stay in force to
# the end of the paragraph (Unicode UAX #9): a user's right-to-left override left open would
# reverse the bot's own words after the quote (the "Trojan Source" trick), so the reply could
# read otherwise than it says. What a user opened is closed where their text ends.
_PDF: Final = "\u202c"
_PDI: Final = "\u2069"
_BIDI_CLOSER: Final = dict.fromkeys("\u202a\u202b\u202d\u202e", _PDF) | dict.fromkeys(
    "\u2066\u2067\u2068", _PDI
)
_BIDI: Final = re.compile("[\u202a-\u202e\u2066-\u2069]")
_PARAGRAPH_ENDS: Final = "\n\r\x1c\x1d\x1e\x85\u2029"  # where the algorithm starts afresh


def neutralise(text: str) -> str:
    """`text` with every BB-code, quote and entity made inert, and every bidi control it opens
    closed at its end; it reads the same."""
    return _close_bidi(_inert(text))


def _inert(text: str) -> str:
    return _LIVE.sub(lambda match: match.group() + JOINER, text)


def _close_bidi(text: str) -> str:
    """`text` followed by the closers of the bidi controls still open at its end."""
    if not _BIDI.search(text):
        return text
    open_: list[str] = []  # the closer each open control needs, innermost last
    for char in text:
        if char in _PARAGRAPH_ENDS:
            open_.clear()
        elif char in _BIDI_CLOSER:
            open_.append(_BIDI_CLOSER[char])
        elif char == _PDF and open_ and open_[-1] == _PDF:
            open_.pop()
        elif char == _PDI and _PDI in open_:
            # A PDI closes its isolate and everything opened inside it.
            del open_[len(open_) - 1 - open_[::-1].index(_PDI) :]
    return text + "".join(reversed(open_))


def shorten(text: str, limit: int) -> str:
    """`text` neutralised, cut to at most `limit` visible characters plus "…" when longer.

    Joiners do not count: they are invisible, and a cut keeps each with the character it
    follows.
    """
    safe = _inert(text)
    visible = 0
    for index, char in enumerate(safe):
        if char == JOINER:
            continue
        if visible == limit:
            return _close_bidi(safe[:index].rstrip()) + ELLIPSIS
        visible += 1
    return _close_bidi(safe)
