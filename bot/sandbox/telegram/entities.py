"""Telegram's formatting: HTML and MarkdownV2 text parsed into plain text and entities.

Follows the Bot API's "Formatting options" and TDLib's parsers (`parse_html`,
`parse_markdown_v2` in td/telegram/MessageEntity.cpp): broken markup is an error, never
guessed at, so tests catch user text sent unescaped. Offsets and lengths of entities are in
UTF-16 code units, byte offsets in errors in UTF-8 bytes, as Telegram counts them. The error
texts follow TDLib's; their exact wording past "can't parse entities" is [UNCONFIRMED].
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

HTML_TAGS: Final = {
    "a": "text_link",
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "tg-emoji": "custom_emoji",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
}
_NAMED: Final = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY: Final = re.compile(r"&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|([a-zA-Z]+));")
_MD_RESERVED: Final = "_*[]()~`>#+-=|{}.!"
_MD_END: Final = {"bold": "*", "italic": "_", "strikethrough": "~", "code": "`"}
_MD_TYPE_NAMES: Final = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


class ParseError(ValueError):
    """Markup Telegram refuses: `Bad Request: can't parse entities: <reason>`."""


@dataclass
class _Open:
    type: str
    utf16_offset: int
    byte_offset: int
    argument: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode())


def _entity(opened: _Open, end: int) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "type": opened.type,
        "offset": opened.utf16_offset,
        "length": end - opened.utf16_offset,
    }
    if opened.type == "text_link":
        entity["url"] = opened.argument
    if opened.type == "custom_emoji":
        entity["custom_emoji_id"] = opened.argument
    if opened.type == "pre" and opened.argument:
        entity["language"] = opened.argument
    return entity | opened.extra


def _decode_entity(text: str, index: int) -> tuple[str, int] | None:
    """An HTML entity at `index`: the character and its length; None leaves `&` as text."""
    match = _ENTITY.match(text, index)
    if match is None:
        return None
    decimal, hexadecimal, name = match.groups()
    if name is not None:
        char = _NAMED.get(name)
        return (char, match.end() - index) if char else None
    code = int(decimal) if decimal is not None else int(hexadecimal, 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:  # noqa: PLR2004
        return None
    return chr(code), match.end() - index


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    out: list[str] = []
    utf16 = 0
    opened: list[_Open] = []
    entities: list[dict[str, Any]] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "&" and (decoded := _decode_entity(text, i)) is not None:
            out.append(decoded[0])
            utf16 += utf16_len(decoded[0])
            i += decoded[1]
            continue
        if char != "<":
            out.append(char)
            utf16 += utf16_len(char)
            i += 1
            continue
        begin = _byte_offset(text, i)
        if text.startswith("</", i):
            if not opened:
                raise ParseError(f"Unexpected end tag at byte offset {begin}")
            close = re.compile(r"</([^\s>]*)\s*(>?)").match(text, i)
            assert close is not None  # noqa: S101 - the pattern matches any "</"
            if not close.group(2):
                raise ParseError(f"Unclosed end tag at byte offset {begin}")
            name = close.group(1).lower()
            top = opened.pop()
            tag = top.extra["_tag"]
            if name and name != tag:
                raise ParseError(
                    f'Unmatched end tag at byte offset {begin}, expected "</{tag}>", '
                    f'found "</{name}>"'
                )
            top.extra.pop("_tag", None)
            if utf16 > top.utf16_offset:
                entities.append(_entity(top, utf16))
            i = close.end()
            continue
        i, tag = _start_tag(text, i, begin)
        tag.utf16_offset = utf16
        opened.append(tag)
    if opened:
        raise ParseError(
            f'Can\'t find end tag corresponding to start tag "{opened[-1].extra["_tag"]}"'
        )
    return "".join(out), entities


_NAME_TOKEN: Final = re.compile(r"[A-Za-z0-9_.-]*")


def _start_tag(text: str, i: int, begin: int) -> tuple[int, _Open]:
    """A start tag at `i` (a `<` not followed by `/`): the index past it and the open tag."""
    name_match = re.compile(r"<([^\s>]*)").match(text, i)
    assert name_match is not None  # noqa: S101 - the pattern matches any "<"
    name = name_match.group(1).lower()
    i = name_match.end()
    if i >= len(text):
        raise ParseError(f"Unclosed start tag at byte offset {begin}")
    if name not in HTML_TAGS:
        raise ParseError(f'Unsupported start tag "{name}" at byte offset {begin}')
    attributes: dict[str, str] = {}
    while i < len(text) and text[i] != ">":
        if text[i].isspace():
            i += 1
            continue
        i, attr_name, value = _attribute(text, i, name, begin)
        attributes[attr_name] = value
    if i >= len(text):
        raise ParseError(f"Unclosed start tag at byte offset {begin}")
    return i + 1, _opened(name, attributes, begin)


def _opened(name: str, attributes: dict[str, str], begin: int) -> _Open:
    if name == "span" and attributes.get("class") != "tg-spoiler":
        raise ParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
    opened = _Open(HTML_TAGS[name], 0, begin, extra={"_tag": name})
    if name == "a":
        opened.argument = attributes.get("href", "")
    elif name == "tg-emoji":
        opened.argument = attributes.get("emoji-id", "")
    elif name == "code" and attributes.get("class", "").startswith("language-"):
        opened.extra["language"] = attributes["class"].removeprefix("language-")
    elif name == "blockquote" and "expandable" in attributes:
        opened.type = "expandable_blockquote"
    return opened


def _skip_spaces(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _attribute(text: str, i: int, tag: str, begin: int) -> tuple[int, str, str]:
    """One attribute of a start tag at `i`: the index past it, its name and value."""
    attr = re.compile(r"[^\s=>/\"']*").match(text, i)
    assert attr is not None  # noqa: S101 - the pattern matches the empty string
    name, i = attr.group().lower(), _skip_spaces(text, attr.end())
    if not name:
        raise ParseError(f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
    if i >= len(text):
        raise ParseError(f"Unclosed start tag at byte offset {begin}")
    if text[i] in ">/":  # a boolean attribute (`expandable`)
        return i + (text[i] == "/"), name, ""
    if text[i] != "=":
        raise ParseError(
            f'Expected equal sign in declaration of an attribute of the tag "{tag}" '
            f"at byte offset {begin}"
        )
    i = _skip_spaces(text, i + 1)
    if i >= len(text):
        raise ParseError(f"Unclosed start tag at byte offset {begin}")
    if text[i] in "\"'":
        end = text.find(text[i], i + 1)
        if end == -1:
            raise ParseError(f"Unclosed start tag at byte offset {begin}")
        return end + 1, name, html_unescape(text[i + 1 : end])
    token = _NAME_TOKEN.match(text, i)
    assert token is not None  # noqa: S101 - the pattern matches the empty string
    if token.end() < len(text) and text[token.end()] not in " >":
        where = _byte_offset(text, token.end())
        raise ParseError(f"Unexpected end of name token at byte offset {where}")
    return token.end(), name, token.group().lower()


def html_unescape(text: str) -> str:
    """Attribute values: the same entities as text, an undecodable `&` kept."""
    out, i = [], 0
    while i < len(text):
        decoded = _decode_entity(text, i) if text[i] == "&" else None
        if decoded is None:
            out.append(text[i])
            i += 1
        else:
            out.append(decoded[0])
            i += decoded[1]
    return "".join(out)


def html_escape(text: str) -> str:
    """What a sender must do to user text (the Bot API: replace <, > and &)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markdown_v2_escape(text: str) -> str:
    return "".join("\\" + c if c in _MD_RESERVED or c == "\\" else c for c in text)


def _reserved(char: str) -> ParseError:
    return ParseError(
        f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
    )


def _md_closes(top: _Open, text: str, i: int) -> bool:
    char, rest = text[i], text[i + 1 : i + 3]
    if top.type in _MD_END:
        return char == _MD_END[top.type] and not (top.type == "italic" and rest[:1] == "_")
    if top.type == "underline":
        return text.startswith("__", i)
    if top.type == "spoiler":
        return text.startswith("||", i)
    if top.type == "pre":
        return text.startswith("```", i)
    return char == "]"  # text_link, custom_emoji


def _md_open(text: str, i: int) -> tuple[int, _Open]:
    """An entity opening at `i`: the index of its last marker character and the entity."""
    char = text[i]
    start = _byte_offset(text, i)
    simple = {"*": "bold", "~": "strikethrough", "[": "text_link"}
    if char in simple:
        return i, _Open(simple[char], 0, start)
    if char == "_":
        double = text.startswith("__", i)
        return i + double, _Open("underline" if double else "italic", 0, start)
    if char == "|" and text.startswith("||", i):
        return i + 1, _Open("spoiler", 0, start)
    if char == "!" and text.startswith("![", i):
        return i + 1, _Open("custom_emoji", 0, start)
    if char == "`" and not text.startswith("```", i):
        return i, _Open("code", 0, start)
    if char == "`":
        i += 3
        language = re.compile(r"[^\s`]*").match(text, i)
        assert language is not None  # noqa: S101 - the pattern matches the empty string
        opened = _Open("pre", 0, start)
        if language.group() and language.end() < len(text) and text[language.end()] != "`":
            opened.argument, i = language.group(), language.end()
        if text.startswith(("\r\n", "\n\r"), i):
            i += 2
        elif text[i : i + 1] in ("\n", "\r"):
            i += 1
        return i - 1, opened
    raise _reserved(char)


def _md_link_target(text: str, i: int, top: _Open, out: list[str], begin: int) -> tuple[int, str]:
    """After `]` at `i`: the index of the last character of `(url)` and the url."""
    if text[i + 1 : i + 2] != "(":
        if top.type == "custom_emoji":
            raise ParseError("Custom emoji entity must contain a tg://emoji URL")
        return i, "".join(out)[begin:]
    j, url = i + 2, []
    while j < len(text) and text[j] != ")":
        if text[j] == "\\" and j + 1 < len(text) and 0 < ord(text[j + 1]) <= 126:  # noqa: PLR2004
            url.append(text[j + 1])
            j += 2
            continue
        url.append(text[j])
        j += 1
    if j >= len(text):
        raise ParseError(f"Can't find end of a URL at byte offset {_byte_offset(text, i + 2)}")
    return j, "".join(url)


def parse_markdown_v2(text: str) -> tuple[str, list[dict[str, Any]]]:  # noqa: C901
    out: list[str] = []
    utf16 = 0
    opened: list[tuple[_Open, int]] = []  # the entity and where its text begins in `out`
    entities: list[dict[str, Any]] = []
    quote: int | None = None  # where the open blockquote began (lines starting with ">")
    i = 0
    while i < len(text):
        char = text[i]
        if quote is not None and char == "\n" and text[i + 1 : i + 2] != ">":
            entities.append({"type": "blockquote", "offset": quote, "length": utf16 - quote})
            quote = None
        if char == "\\" and i + 1 < len(text) and 0 < ord(text[i + 1]) <= 126:  # noqa: PLR2004
            out.append(text[i + 1])
            utf16 += 1
            i += 2
            continue
        in_code = bool(opened) and opened[-1][0].type in ("code", "pre")
        if char not in ("`" if in_code else _MD_RESERVED):
            out.append(char)
            utf16 += utf16_len(char)
            i += 1
            continue
        if char == ">" and not in_code and (i == 0 or text[i - 1] == "\n"):
            quote = utf16 if quote is None else quote
            i += 1
            continue
        if opened and _md_closes(opened[-1][0], text, i):
            top, begin = opened.pop()
            i += {"underline": 1, "spoiler": 1, "pre": 2}.get(top.type, 0)
            if top.type in ("text_link", "custom_emoji"):
                i, top.argument = _md_link_target(text, i, top, out, begin)
            if utf16 > top.utf16_offset and (top.type != "text_link" or top.argument):
                entities.append(_entity(top, utf16))
            i += 1
            continue
        i, entity = _md_open(text, i)
        entity.utf16_offset = utf16
        opened.append((entity, len(out)))
        i += 1
    if quote is not None and utf16 > quote:
        entities.append({"type": "blockquote", "offset": quote, "length": utf16 - quote})
    if opened:
        top = opened[-1][0]
        raise ParseError(
            f"Can't find end of {_MD_TYPE_NAMES[top.type]} entity at byte offset {top.byte_offset}"
        )
    return "".join(out), entities


def parse(text: str, parse_mode: str | None) -> tuple[str, list[dict[str, Any]]]:
    """Text and entities for `parse_mode` (None: the text as it is); unknown modes refused."""
    if not parse_mode:
        return text, []
    mode = parse_mode.lower()
    if mode == "html":
        return parse_html(text)
    if mode == "markdownv2":
        return parse_markdown_v2(text)
    raise ParseError(f"Unsupported parse_mode {parse_mode!r}")


def trimmed(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Leading and trailing whitespace dropped, entities moved and clipped to match (as
    TDLib's fix_formatted_text does); entities left empty vanish."""
    stripped = text.lstrip()
    head = utf16_len(text) - utf16_len(stripped)
    body = stripped.rstrip()
    end = utf16_len(body)
    kept = []
    for entity in entities:
        start = max(entity["offset"] - head, 0)
        stop = min(entity["offset"] + entity["length"] - head, end)
        if stop > start:
            kept.append(entity | {"offset": start, "length": stop - start})
    kept.sort(key=lambda e: (e["offset"], -e["length"]))
    return body, kept


_COMMAND: Final = re.compile(r"(?<![\w/@])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?![\w/@])")


def user_entities(text: str) -> list[dict[str, Any]]:
    """The entities Telegram finds in what a user typed: bot commands (`/rate`,
    `/rate@SomeBot`). Mentions, URLs and hashtags are not modelled [UNCONFIRMED gaps]."""
    return [
        {
            "type": "bot_command",
            "offset": utf16_len(text[: m.start()]),
            "length": utf16_len(m.group()),
        }
        for m in _COMMAND.finditer(text)
    ]
