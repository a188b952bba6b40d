"""The grammar of supervisor commands: message text -> a frozen command model, or a parse error.

    /rate <session> [<rating>] [<comment…>]     /оценка is an alias
    /help                                        /start and /помощь are aliases
    /link [<code>]    /start <code>    /unlink   linked Telegram accounts (bot/links.py)
    /logout                                      /выйти is an alias: forget my Bitrix24 token

- The session is `494`, `#494` or `№494`; the rating is `5`, `5/5` or one to five stars.
- A token that starts with a number right after the session is always the rating:
  `/rate 494 7 …` is an out-of-range rating, and `/rate 494 5, молодец` a rating that cannot
  be read, never a comment.
- The comment is everything after the rating (or after the session when there is no rating),
  verbatim: several words, punctuation, emoji, several lines.
- Inside a chat that belongs to a session the caller passes `chat_session_id`; then the session
  may be left out (`/rate 5 Молодец`, `/rate 5`, `/rate Долго отвечал`, `/rate`). A bare number
  there is the rating unless another rating follows it (`/rate 494 5`); `#5` is always session 5.
- A comment-only command cannot start with a rating-shaped token (it would be read as the
  rating), nor with one of invisible characters alone (refused, below), so `format_command`
  is the inverse of `parse_command` on every other command.
- Invisible characters (Unicode's format characters: bidi controls and marks, joiners, the soft
  hyphen) inside the command's name, its session or its rating are an error that names them:
  `/rate\u2066 494`, `/ra\u200bte`, `/rate 494 \u20665`. The text would read as one command and
  parse as another (a rating silently saved as the comment "5", or an override showing
  `/rate 5 494`); the comment keeps them, as typed.
- Digits mean what they look like whatever the keyboard: full-width `４９４`, other scripts'
  `٥`/`५`, superscript and circled `⁵`/`⑤`, keycaps `5️⃣` are read as ASCII digits when a token is
  classified; the comment itself is kept exactly as typed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import Enum, auto
from typing import Annotated, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.errors import (
    CommandParseError,
    CommentTooLong,
    HiddenCharacters,
    InvalidSession,
    MissingSession,
    NotACommand,
    RatingOrSession,
    RatingOutOfRange,
    SessionOutOfRange,
    UnknownCommand,
)
from bot.markup import shorten

MAX_SESSION_ID: Final = 2**31 - 1  # Bitrix24 keeps session ids in a signed 32-bit column.
MAX_RATING: Final = 5
# Bitrix24 cuts a longer head comment to 10,000 characters and adds "..." (protocol notes
# §7.3, step 5); refusing it instead means nothing the supervisor wrote is lost.
MAX_COMMENT_LENGTH: Final = 10_000

COMMAND_NAMES: Final = {
    "rate": "rate",
    "оценка": "rate",
    "help": "help",
    "start": "help",
    "помощь": "help",
    "link": "link",
    "unlink": "unlink",
    "logout": "logout",
    "выйти": "logout",
}
_MAX_CODE_LENGTH: Final = 64  # Telegram's longest deep-link parameter

# Separators: Unicode whitespace (space, tab, newline, NBSP, narrow NBSP, …) plus the invisible
# characters copy-paste leaves behind (zero-width space, word joiner, BOM).
_SEPARATORS: Final = "\u200b\u2060\ufeff"
_TOKEN = re.compile(rf"[^\s{_SEPARATORS}]+")

_DIGITS = re.compile(r"[0-9]+")
_SIGNED = re.compile(r"[+-][0-9]+")
_DECIMAL = re.compile(r"[+-]?[0-9]+[.,][0-9]+")
_FRACTION = re.compile(r"([0-9]+)/([0-9]+)")
_STARS = re.compile(r"(?:[★☆]|⭐\ufe0f?)+")
_SESSION_MARKS: Final = ("#", "№")
# Longer digit runs are out of range anyway; int() of thousands of digits is slow and refused.
_MAX_DIGITS: Final = 12
# A keycap digit is the digit, U+FE0F and U+20E3 (`5️⃣`); the marks are dropped after a digit.
_KEYCAP_MARKS: Final = "\ufe0f\u20e3"
# Lookalikes NFKC leaves alone: the keycap ten, the Arabic decimal separator, the minus sign
# and the dashes a keyboard or an autocorrect writes for one (`–1` is `-1`).
_LOOKALIKES: Final = {
    "\U0001f51f": "10",
    "\u066b": ".",
    "\u2212": "-",
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015", "-"),
}
# A token that starts with a number, whatever follows it (`5,`, `5.`, `1)`, `4stars`): in the
# rating's place it is a rating written so that it cannot be read, never a comment.
_NUMBER_FIRST = re.compile(r"[+-]?[0-9]")
# What a compatibility form may fold into to be taken as it looks (NFKC folds `№` into "No":
# that one stays a session mark of its own).
_NUMERIC_ASCII: Final = frozenset("0123456789#+-.,/")

SessionId = Annotated[int, Field(ge=1, le=MAX_SESSION_ID)]
Rating = Annotated[int, Field(ge=1, le=MAX_RATING)]


def _is_separator(char: str) -> bool:
    return char.isspace() or char in _SEPARATORS


def _trim(text: str) -> str:
    """Strip separators from both ends (a linear scan: a regex anchored at the end is not)."""
    start, end = 0, len(text)
    while start < end and _is_separator(text[start]):
        start += 1
    while end > start and _is_separator(text[end - 1]):
        end -= 1
    return text[start:end]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RateCommand(_Frozen):
    """Rate a session: a rating, a comment, or both."""

    session_id: SessionId
    rating: Rating | None = None
    comment: Annotated[str, Field(min_length=1, max_length=MAX_COMMENT_LENGTH)] | None = None

    @field_validator("comment", mode="before")
    @classmethod
    def _trim_comment(cls, value: object) -> object:
        if isinstance(value, str):
            return _trim(value) or None
        return value

    @model_validator(mode="after")
    def _something_to_save(self) -> Self:
        if self.rating is None and self.comment is None:
            raise ValueError("a rating, a comment or both")
        return self


class RatePrompt(_Frozen):
    """`/rate <session>` alone: the flow answers with a 1-5 star keyboard."""

    session_id: SessionId


class HelpCommand(_Frozen):
    """`/help` and `/помощь`; `/start` (Telegram's first message) asks for the short welcome."""

    welcome: bool = False


class LinkCommand(_Frozen):
    """`/link` (asks for a code in Bitrix24), `/link <code>` or `/start <code>` (redeems one in
    Telegram; `start`: it came as a deep link's `/start`)."""

    code: Annotated[str, Field(min_length=1, max_length=_MAX_CODE_LENGTH)] | None = None
    start: bool = False


class UnlinkCommand(_Frozen):
    """`/unlink`: undo the link of the side it is written on."""


class LogoutCommand(_Frozen):
    """`/logout`: forget the supervisor's own Bitrix24 token (application mode, issue 12)."""


Command = RateCommand | RatePrompt | HelpCommand | LinkCommand | UnlinkCommand | LogoutCommand


class _Kind(Enum):
    MARKED_SESSION = auto()  # #494, №494
    NUMBER = auto()  # 494, 5
    RATING = auto()  # 5/5, ★★★, -1, 4.5: rating-shaped, never a session
    WORD = auto()


@dataclass(frozen=True)
class _Token:
    text: str  # as typed: what an error quotes
    rest: str  # everything after the token, separators stripped from its start
    value: str  # the text with its digits in ASCII: what is classified and read as a number

    @property
    def kind(self) -> _Kind:
        if self.value.startswith(_SESSION_MARKS):
            return _Kind.MARKED_SESSION
        if _DIGITS.fullmatch(self.value):
            return _Kind.NUMBER
        if any(p.fullmatch(self.value) for p in (_SIGNED, _DECIMAL, _FRACTION, _STARS)):
            return _Kind.RATING
        return _Kind.WORD


def _next_token(text: str) -> _Token | None:
    """The next token; raises HiddenCharacters for one whose invisible characters hide a
    number or a rating (or that is nothing else): what it reads as is not what it is."""
    match = _TOKEN.match(text)
    if match is None:
        return None
    token = match.group()
    if not token.isascii() and (hidden := _hidden(token)):
        visible = _ascii_digits("".join(c for c in token if c not in hidden))
        if not visible or visible.startswith(_SESSION_MARKS) or _looks_like_rating(visible):
            raise HiddenCharacters(token=token, codes=_codes(hidden))
    return _Token(token, _trim(text[match.end() :]), _ascii_digits(token))


def _hidden(text: str) -> str:
    """The invisible format characters (category Cf) in `text`, each once."""
    return "".join(dict.fromkeys(c for c in text if unicodedata.category(c) == "Cf"))


def _codes(hidden: str) -> str:
    return ", ".join(f"U+{ord(c):04X}" for c in hidden[:3])


def _looks_like_rating(value: str) -> bool:
    return bool(_NUMBER_FIRST.match(value) or _STARS.fullmatch(value))


def _ascii_digits(token: str) -> str:
    """`token` with every digit, of any script or form, written as an ASCII digit."""
    if token.isascii():
        return token
    chars: list[str] = []
    for char in token:
        if char in _KEYCAP_MARKS and chars and chars[-1][-1:].isdigit():
            continue
        chars.append(_ascii_digit(char))
    return "".join(chars)


def _ascii_digit(char: str) -> str:
    # Every digit of any script or form has a digit value: full-width `５`, Arabic-Indic `٥`,
    # Devanagari `५`, superscript `⁵`, circled `⑤`, `⑸`, `⒌` (NFKC would miss the scripts'
    # own digits and fold `⑸` into "(5)"). NFKC then folds numbers and signs: `⑩`, `＃`, `／`.
    value = unicodedata.digit(char, None)
    if value is not None:
        return str(value)
    if char in _LOOKALIKES:
        return _LOOKALIKES[char]
    folded = unicodedata.normalize("NFKC", char)
    return folded if set(folded) <= _NUMERIC_ASCII else char


def parse_command(text: str, *, chat_session_id: int | None = None) -> Command:
    """Parse one command.

    Args:
        text: the message text, as typed.
        chat_session_id: the session of the open-line chat the message was written in, if any.

    Raises:
        CommandParseError: a subclass that says precisely what is wrong.
    """
    head = _next_token(_trim(text))
    if head is None or not head.text.startswith("/"):
        raise NotACommand
    name = head.text[1:].partition("@")[0].casefold()
    kind = COMMAND_NAMES.get(name)
    if kind is None:
        # Up to real whitespace: a zero-width separator may have split the name (`/ra\u200bte`).
        typed = _trim(text).split(maxsplit=1)[0]
        if not typed.isascii() and (hidden := _hidden(typed)):
            raise HiddenCharacters(token=typed, codes=_codes(hidden))
        raise UnknownCommand(command=head.text)
    if kind == "help" and name == "start" and head.rest:
        return LinkCommand(code=_link_code(head.rest), start=True)
    if kind == "help":
        return HelpCommand(welcome=name == "start")
    if kind == "link":
        return LinkCommand(code=_link_code(head.rest) if head.rest else None)
    if kind == "unlink":
        return UnlinkCommand()
    if kind == "logout":
        return LogoutCommand()
    return _parse_rate(head.rest, chat_session_id)


def _link_code(args: str) -> str:
    """The first word after the command, cut: a code is short, whatever was typed."""
    token = _next_token(args)
    return token.text[:_MAX_CODE_LENGTH] if token is not None else args[:_MAX_CODE_LENGTH]


def _parse_rate(args: str, chat_session_id: int | None) -> Command:
    first = _next_token(args)
    if chat_session_id is not None:
        return _parse_rate_in_chat(first, args, chat_session_id)
    if first is None:
        raise MissingSession
    if first.kind in (_Kind.MARKED_SESSION, _Kind.NUMBER):
        return _after_session(_session_id(first), first.rest, explicit=True)
    if first.kind is _Kind.WORD and not first.value[:1].isdigit():
        raise MissingSession
    if _STARS.fullmatch(first.value) or _FRACTION.fullmatch(first.value):
        raise MissingSession  # a rating with no session before it
    raise InvalidSession(token=first.text)


def _parse_rate_in_chat(first: _Token | None, args: str, chat_session_id: int) -> Command:
    if first is None:
        return RatePrompt(session_id=chat_session_id)
    if first.kind is _Kind.MARKED_SESSION:
        return _after_session(_session_id(first), first.rest, explicit=True)
    if first.kind is _Kind.NUMBER:
        following = _next_token(first.rest)
        if following is not None and following.kind in (_Kind.NUMBER, _Kind.RATING):
            return _after_session(_session_id(first), first.rest, explicit=True)
    return _after_session(chat_session_id, args, explicit=False)


def _after_session(session_id: int, args: str, *, explicit: bool) -> Command:
    token = _next_token(args)
    if token is None:
        return RatePrompt(session_id=session_id)
    rating: int | None = None
    comment = args
    if token.kind in (_Kind.NUMBER, _Kind.RATING) or _NUMBER_FIRST.match(token.value):
        rating = _rating(token.value)
        if rating is None:
            wanted = RateCommand(
                session_id=session_id,
                rating=_nearest_rating(token.value),
                comment=_shortened(token.rest) or None,
            )
            example = _example(wanted, explicit=explicit)
            if not explicit and token.kind is _Kind.NUMBER and _is_session_id(token):
                # In a session's chat `/rate 494 Долго` may mean session 494: show both fixes.
                raise RatingOrSession(
                    token=token.text,
                    example=example,
                    session_example=_marked_example(_session_id(token), token.rest),
                )
            raise RatingOutOfRange(token=token.text, example=example)
        comment = token.rest
    if len(comment) > MAX_COMMENT_LENGTH:
        wanted = RateCommand(session_id=session_id, rating=rating, comment=_shortened(comment))
        raise CommentTooLong(
            length=len(comment),
            limit=MAX_COMMENT_LENGTH,
            example=_example(wanted, explicit=explicit),
        )
    return RateCommand(session_id=session_id, rating=rating, comment=comment or None)


def _example(command: RateCommand, *, explicit: bool) -> str:
    """A corrected command in the form the supervisor used, that parses back as intended.

    Inside a session's chat the short form (`/rate 5 …`) is kept when it reads back the same;
    otherwise the session is written with its mark (`/rate #494 …`), which reads the same
    everywhere.
    """
    if explicit:
        return format_command(command)
    short = format_command(command, session="omitted")
    try:
        same = parse_command(short, chat_session_id=command.session_id) == command
    except CommandParseError:
        same = False
    return short if same else format_command(command, session="marked")


def _session_id(token: _Token) -> int:
    value = token.value
    digits = value[1:] if value.startswith(_SESSION_MARKS) else value
    if not _DIGITS.fullmatch(digits) or not digits.lstrip("0"):
        raise InvalidSession(token=token.text)
    digits = digits.lstrip("0")
    if len(digits) > _MAX_DIGITS or int(digits) > MAX_SESSION_ID:
        raise SessionOutOfRange(token=token.text, maximum=MAX_SESSION_ID)
    return int(digits)


def _is_session_id(token: _Token) -> bool:
    try:
        _session_id(token)
    except CommandParseError:
        return False
    return True


def _marked_example(session_id: int, comment: str) -> str:
    if not comment:
        return format_command(RatePrompt(session_id=session_id), session="marked")
    wanted = RateCommand(session_id=session_id, comment=_shortened(comment))
    return format_command(wanted, session="marked")


def _rating(token: str) -> int | None:
    """The rating a rating-shaped token stands for, or None when it is out of 1..5."""
    value: int | None = None
    if _DIGITS.fullmatch(token) or _SIGNED.fullmatch(token):
        digits = token.lstrip("+-").lstrip("0")
        value = int(token) if len(digits) <= _MAX_DIGITS else None
    elif fraction := _FRACTION.fullmatch(token):
        if fraction.group(2).lstrip("0") == str(MAX_RATING) and len(token) <= _MAX_DIGITS:
            value = int(fraction.group(1))
    elif _STARS.fullmatch(token):
        filled = token.count("★") + token.count("⭐")
        empty = token.count("☆")
        value = filled if empty == 0 or filled + empty == MAX_RATING else None
    return value if value is not None and 1 <= value <= MAX_RATING else None


def _nearest_rating(token: str) -> int:
    """The in-range rating closest to what was written, for the corrected example."""
    numbers = [int(n[:_MAX_DIGITS]) for n in _DIGITS.findall(token)]
    if fraction := _FRACTION.fullmatch(token):
        whole, scale = int(fraction.group(1)[:_MAX_DIGITS]), int(fraction.group(2)[:_MAX_DIGITS])
        numbers = [round(whole * MAX_RATING / scale)] if scale else [MAX_RATING]
    elif _STARS.fullmatch(token):
        numbers = [token.count("★") + token.count("⭐")]
    elif _DECIMAL.fullmatch(token):
        # float() of a long digit run is inf, which round() refuses; the sign is applied below.
        numbers = [round(min(abs(float(token.replace(",", "."))), MAX_RATING + 1))]
    value = -numbers[0] if token.startswith("-") and numbers else (numbers or [MAX_RATING])[0]
    return min(max(value, 1), MAX_RATING)


def _shortened(comment: str, limit: int = 30) -> str:
    """The start of a comment's first line, for an example that must stay short.

    Neutralised before it is cut (bot/markup.py): the cut can never leave a tag open.
    """
    first_line = _trim(comment[: limit * 4]).split("\n", 1)[0]
    return shorten(first_line, limit)


def format_command(
    command: Command, *, session: Literal["plain", "marked", "omitted"] = "plain"
) -> str:
    """The canonical text of a command; `parse_command` reads it back as the same command.

    `session="omitted"` writes the short form for a session's own chat; `"marked"` writes
    `#494`, which means that session inside any chat.
    """
    if isinstance(command, HelpCommand):
        return "/start" if command.welcome else "/help"
    if isinstance(command, LinkCommand):
        name = "/start" if command.start else "/link"
        return f"{name} {command.code}" if command.code is not None else name
    if isinstance(command, UnlinkCommand):
        return "/unlink"
    if isinstance(command, LogoutCommand):
        return "/logout"
    parts = ["/rate"]
    if session != "omitted":
        parts.append(("#" if session == "marked" else "") + str(command.session_id))
    if isinstance(command, RateCommand):
        if command.rating is not None:
            parts.append(str(command.rating))
        if command.comment is not None:
            parts.append(command.comment)
    return " ".join(parts)
