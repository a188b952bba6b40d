"""The command grammar, as a table: what a supervisor types -> what the service understands."""

from __future__ import annotations

import pytest

from bot.commands import (
    MAX_COMMENT_LENGTH,
    Command,
    HelpCommand,
    RateCommand,
    RatePrompt,
    format_command,
    parse_command,
)
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
from bot.markup import JOINER
from bot.texts import render

CHAT = 343  # the session of the open-line chat a command is typed in, when there is one
J = JOINER  # the invisible mark that keeps a `[` a user wrote from opening a tag


def rate(session: int, rating: int | None = None, comment: str | None = None) -> RateCommand:
    return RateCommand(session_id=session, rating=rating, comment=comment)


PARSED: list[tuple[str, int | None, Command]] = [
    # The three shapes of /rate, and the bare session that asks for a star keyboard.
    ("/rate 494 5 Молодец", None, rate(494, 5, "Молодец")),
    ("/rate 494 5", None, rate(494, 5)),
    ("/rate 494 Долго отвечал", None, rate(494, comment="Долго отвечал")),
    ("/rate 494", None, RatePrompt(session_id=494)),
    # The comment is everything after the rating, verbatim.
    ("/rate 494 5 Молодец, всё чётко!", None, rate(494, 5, "Молодец, всё чётко!")),
    ("/rate 494 4 Хорошо 👍🏻 но  медленно", None, rate(494, 4, "Хорошо 👍🏻 но  медленно")),
    (
        "/rate 494 3 Первая строка\nВторая\n\nЧетвёртая",
        None,
        rate(494, 3, "Первая строка\nВторая\n\nЧетвёртая"),
    ),
    ("/rate 494 2 5 минут ждал клиент", None, rate(494, 2, "5 минут ждал клиент")),
    ("/rate 494 Клиент ждал 5 минут", None, rate(494, comment="Клиент ждал 5 минут")),
    ("/rate 494 #1 в очереди", None, rate(494, comment="#1 в очереди")),
    # Ways to write the session and the rating.
    ("/rate #494 5", None, rate(494, 5)),
    ("/rate №494 5", None, rate(494, 5)),
    ("/rate 0494 5", None, rate(494, 5)),
    ("/rate 494 5/5 Отлично", None, rate(494, 5, "Отлично")),
    ("/rate 494 3/5", None, rate(494, 3)),
    ("/rate 494 ★★★★★ Отлично", None, rate(494, 5, "Отлично")),
    ("/rate 494 ★", None, rate(494, 1)),
    ("/rate 494 ⭐⭐⭐", None, rate(494, 3)),
    ("/rate 494 ⭐️⭐️⭐️⭐️ С эмодзи-вариантом", None, rate(494, 4, "С эмодзи-вариантом")),
    ("/rate 494 ★★★☆☆", None, rate(494, 3)),
    ("/rate 2147483647 1", None, rate(2**31 - 1, 1)),
    # The command name: any case, a Telegram @mention, the Russian alias.
    ("/RATE 494 5", None, rate(494, 5)),
    ("/Rate 494 5", None, rate(494, 5)),
    ("/rate@SomeBot 494 5 Молодец", None, rate(494, 5, "Молодец")),
    ("/оценка 494 5 Молодец", None, rate(494, 5, "Молодец")),
    ("/Оценка@SomeBot 494", None, RatePrompt(session_id=494)),
    # Whitespace of every kind around and between the parts.
    ("  /rate   494   5   Молодец  ", None, rate(494, 5, "Молодец")),
    ("\t/rate\t494\t5\tМолодец\t", None, rate(494, 5, "Молодец")),
    ("/rate\u00a0494\u00a05\u00a0Молодец", None, rate(494, 5, "Молодец")),
    ("/rate\u202f494\u2009 5 Молодец", None, rate(494, 5, "Молодец")),
    ("\ufeff/rate \u200b494 5 Молодец\u200b", None, rate(494, 5, "Молодец")),
    # Invisible characters inside the comment are the comment's (a Persian ZWNJ, an RLM).
    ("/rate 494 5 \u200fשלום", None, rate(494, 5, "\u200fשלום")),
    ("/rate 494 \u200fשלום 5", None, rate(494, None, "\u200fשלום 5")),
    ("/rate 494 5 می\u200cخواهم", None, rate(494, 5, "می\u200cخواهم")),
    ("\n/rate 494 5\nМолодец\n\n", None, rate(494, 5, "Молодец")),
    # Inside a session's own chat the session may be left out.
    ("/rate 5 Молодец", CHAT, rate(CHAT, 5, "Молодец")),
    ("/rate 5", CHAT, rate(CHAT, 5)),
    ("/rate ★★★★ Хорошо", CHAT, rate(CHAT, 4, "Хорошо")),
    ("/rate Долго отвечал", CHAT, rate(CHAT, comment="Долго отвечал")),
    ("/rate", CHAT, RatePrompt(session_id=CHAT)),
    ("/оценка 4/5", CHAT, rate(CHAT, 4)),
    # ... while #N always means session N, and a number followed by a rating is a session.
    ("/rate #5", CHAT, RatePrompt(session_id=5)),
    ("/rate #5 Молодец", CHAT, rate(5, comment="Молодец")),
    ("/rate #5 4", CHAT, rate(5, 4)),
    ("/rate 494 5 Молодец", CHAT, rate(494, 5, "Молодец")),
    ("/rate 494 ★★", CHAT, rate(494, 2)),
    # Digits of any script or form mean what they look like; the comment stays as typed.
    ("/rate ４９４ ５ Молодец", None, rate(494, 5, "Молодец")),  # full-width
    ("/rate ٤٩٤ ٥ Молодец", None, rate(494, 5, "Молодец")),  # Arabic-Indic
    ("/rate ۴۹۴ ۵", None, rate(494, 5)),  # Persian
    ("/rate ४९४ ५", None, rate(494, 5)),  # Devanagari
    ("/rate ৪৯৪ ৫", None, rate(494, 5)),  # Bengali
    ("/rate ๔๙๔ ๕", None, rate(494, 5)),  # Thai
    ("/rate 𝟒𝟗𝟒 𝟓", None, rate(494, 5)),  # mathematical bold
    ("/rate 4٩4 5", None, rate(494, 5)),  # mixed
    ("/rate 494 ⁵", None, rate(494, 5)),  # superscript
    ("/rate 494 ⑤ Молодец", None, rate(494, 5, "Молодец")),  # circled
    ("/rate 494 5️⃣ Молодец", None, rate(494, 5, "Молодец")),  # keycap
    ("/rate 494 5⃣", None, rate(494, 5)),  # keycap without the emoji selector
    ("/rate ＃494 ５／５", None, rate(494, 5)),  # full-width mark and slash
    ("/rate №٤٩٤ ٣/٥", None, rate(494, 3)),
    ("/rate 494 ٥ ٥ минут ждал", None, rate(494, 5, "٥ минут ждал")),
    ("/rate 494 ⒌ пункт", None, rate(494, 5, "пункт")),  # digit five full stop
    ("/rate 494 ❹ ⑷", None, rate(494, 4, "⑷")),
    ("/rate ٥ Молодец", CHAT, rate(CHAT, 5, "Молодец")),
    ("/rate #٤٩٤", CHAT, RatePrompt(session_id=494)),
    ("/rate ٤٩٤ ٥", CHAT, rate(494, 5)),
    # Help and its aliases; arguments to help are ignored.
    ("/help", None, HelpCommand()),
    ("/start", None, HelpCommand(welcome=True)),
    ("/помощь", None, HelpCommand()),
    ("/HELP@SomeBot", CHAT, HelpCommand()),
    ("/help rate", None, HelpCommand()),
]


@pytest.mark.parametrize(("text", "chat_session_id", "expected"), PARSED)
def test_parses(text: str, chat_session_id: int | None, expected: Command) -> None:
    assert parse_command(text, chat_session_id=chat_session_id) == expected


def test_comment_of_exactly_the_limit_is_accepted() -> None:
    comment = "ж" * MAX_COMMENT_LENGTH
    assert parse_command(f"/rate 494 5 {comment}") == rate(494, 5, comment)


REFUSED: list[tuple[str, int | None, type[CommandParseError], dict[str, str | int]]] = [
    ("привет", None, NotACommand, {}),
    ("", None, NotACommand, {}),
    ("   \n ", None, NotACommand, {}),
    ("494 5 Молодец", None, NotACommand, {}),
    ("/rat 494 5", None, UnknownCommand, {"command": "/rat"}),
    ("/rate494 5", None, UnknownCommand, {"command": "/rate494"}),
    ("/", None, UnknownCommand, {"command": "/"}),
    ("/rate", None, MissingSession, {}),
    ("/rate Молодец", None, MissingSession, {}),
    ("/rate ★★★★★ Молодец", None, MissingSession, {}),
    ("/rate 5/5", None, MissingSession, {}),
    ("/rate 0 5", None, InvalidSession, {"token": "0"}),
    ("/rate -494 5", None, InvalidSession, {"token": "-494"}),
    ("/rate 49.4 5", None, InvalidSession, {"token": "49.4"}),
    ("/rate 494abc 5", None, InvalidSession, {"token": "494abc"}),
    ("/rate # 5", None, InvalidSession, {"token": "#"}),
    ("/rate #abc", CHAT, InvalidSession, {"token": "#abc"}),
    ("/rate #0 5", CHAT, InvalidSession, {"token": "#0"}),
    ("/rate 2147483648 5", None, SessionOutOfRange, {"token": "2147483648", "maximum": 2**31 - 1}),
    ("/rate #99999999999999999999 5", None, SessionOutOfRange, {"token": "#99999999999999999999"}),
    # A purely numeric token right after the session is always the rating.
    (
        "/rate 494 7 Молодец",
        None,
        RatingOutOfRange,
        {"token": "7", "example": "/rate 494 5 Молодец"},
    ),
    ("/rate 494 0", None, RatingOutOfRange, {"token": "0", "example": "/rate 494 1"}),
    (
        "/rate 494 -1 Плохо",
        None,
        RatingOutOfRange,
        {"token": "-1", "example": "/rate 494 1 Плохо"},
    ),
    (
        "/rate 494 10 Супер",
        None,
        RatingOutOfRange,
        {"token": "10", "example": "/rate 494 5 Супер"},
    ),
    (
        "/rate 494 4.5 Хорошо",
        None,
        RatingOutOfRange,
        {"token": "4.5", "example": "/rate 494 4 Хорошо"},
    ),
    ("/rate 494 6/5", None, RatingOutOfRange, {"token": "6/5", "example": "/rate 494 5"}),
    ("/rate 494 8/10", None, RatingOutOfRange, {"token": "8/10", "example": "/rate 494 4"}),
    ("/rate 494 ★★★★★★", None, RatingOutOfRange, {"token": "★★★★★★", "example": "/rate 494 5"}),
    ("/rate 494 ☆☆☆☆☆", None, RatingOutOfRange, {"token": "☆☆☆☆☆", "example": "/rate 494 1"}),
    ("/rate 494 99999999999999999999999", None, RatingOutOfRange, {"example": "/rate 494 5"}),
    # Digits of other scripts are refused as their ASCII twins are, quoted as typed.
    ("/rate ٠ 5", None, InvalidSession, {"token": "٠"}),
    ("/rate ٤٩٤abc 5", None, InvalidSession, {"token": "٤٩٤abc"}),
    ("/rate ٢١٤٧٤٨٣٦٤٨ 5", None, SessionOutOfRange, {"token": "٢١٤٧٤٨٣٦٤٨"}),
    (
        "/rate 494 ٧ Молодец",
        None,
        RatingOutOfRange,
        {"token": "٧", "example": "/rate 494 5 Молодец"},
    ),
    ("/rate 494 ⓪", None, RatingOutOfRange, {"token": "⓪", "example": "/rate 494 1"}),
    ("/rate 494 🔟", None, RatingOutOfRange, {"token": "🔟", "example": "/rate 494 5"}),
    ("/rate 494 7️⃣", None, RatingOutOfRange, {"token": "7️⃣", "example": "/rate 494 5"}),
    ("/rate 494 ٤٫٥ Хорошо", None, RatingOutOfRange, {"example": "/rate 494 4 Хорошо"}),
    ("/rate 494 −1", None, RatingOutOfRange, {"token": "−1", "example": "/rate 494 1"}),
    # A number glued to punctuation or letters is a rating that cannot be read, not a comment.
    (
        "/rate 494 5, молодец",
        None,
        RatingOutOfRange,
        {"token": "5,", "example": "/rate 494 5 молодец"},
    ),
    ("/rate 494 1) долго", None, RatingOutOfRange, {"example": "/rate 494 1 долго"}),
    ("/rate 494 4stars", None, RatingOutOfRange, {"token": "4stars", "example": "/rate 494 4"}),
    ("/rate 494 –1", None, RatingOutOfRange, {"token": "–1", "example": "/rate 494 1"}),
    (
        "/rate ٤٩٤ Долго",
        CHAT,
        RatingOrSession,
        {"token": "٤٩٤", "example": "/rate 5 Долго", "session_example": "/rate #494 Долго"},
    ),
    # In a session's chat the corrected example keeps the short form...
    ("/rate 0 Плохо", CHAT, RatingOutOfRange, {"token": "0", "example": "/rate 1 Плохо"}),
    ("/rate 4,5 Хорошо", CHAT, RatingOutOfRange, {"token": "4,5", "example": "/rate 4 Хорошо"}),
    # ... and a bare number that could be another session is answered with both readings.
    (
        "/rate 494 Долго отвечал",
        CHAT,
        RatingOrSession,
        {
            "token": "494",
            "example": "/rate 5 Долго отвечал",
            "session_example": "/rate #494 Долго отвечал",
        },
    ),
    ("/rate 7", CHAT, RatingOrSession, {"example": "/rate 5", "session_example": "/rate #7"}),
    (
        f"/rate 494 5 {'ж' * (MAX_COMMENT_LENGTH + 1)}",
        None,
        CommentTooLong,
        {
            "length": MAX_COMMENT_LENGTH + 1,
            "limit": MAX_COMMENT_LENGTH,
            "example": "/rate 494 5 " + "ж" * 30 + "…",
        },
    ),
    (
        f"/rate 494 {'Очень длинный разбор диалога. ' * 400}",
        None,
        CommentTooLong,
        {"length": 12_000 - 1, "example": "/rate 494 Очень длинный разбор диалога.…"},
    ),
    (
        f"/rate {'слово ' * 2001}",
        CHAT,
        CommentTooLong,
        {"length": 6 * 2001 - 1, "example": "/rate слово слово слово слово слово…"},
    ),
    # Invisible characters where they hide what the command is: never a wrong vote.
    ("/ra\u200bte 494 5", None, HiddenCharacters, {"token": "/ra\u200bte", "codes": "U+200B"}),
    ("/rate\u2066 494 5", None, HiddenCharacters, {"token": "/rate\u2066", "codes": "U+2066"}),
    ("/rate \u2066494 5", None, HiddenCharacters, {"codes": "U+2066"}),
    ("/rate \u2066 494 5", None, HiddenCharacters, {"token": "\u2066"}),
    ("/rate 494 \u20665", None, HiddenCharacters, {"token": "\u20665"}),  # not a comment "5"
    ("/rate 494 \u200f5 минут", None, HiddenCharacters, {"codes": "U+200F"}),
    ("/rate \u202e494 5\u202c", None, HiddenCharacters, {"codes": "U+202E"}),  # reads 5 494
    ("/rate 494 \u202d\u200e★★★", None, HiddenCharacters, {"codes": "U+202D, U+200E"}),
    ("/rate \u2067#494", CHAT, HiddenCharacters, {"codes": "U+2067"}),
    ("/rate \u20675 Молодец", CHAT, HiddenCharacters, {"codes": "U+2067"}),
]


@pytest.mark.parametrize(("text", "chat_session_id", "error", "params"), REFUSED)
def test_refuses(
    text: str,
    chat_session_id: int | None,
    error: type[CommandParseError],
    params: dict[str, str | int],
) -> None:
    with pytest.raises(CommandParseError) as caught:
        parse_command(text, chat_session_id=chat_session_id)
    assert type(caught.value) is error
    assert params.items() <= caught.value.params.items()


@pytest.mark.parametrize(
    ("text", "chat_session_id", "ru", "en"),
    [
        (
            "привет",
            None,
            "Я понимаю только команды, например: /rate 494 5 Молодец. Справка: /help",
            "I understand commands only, for example: /rate 494 5 Well done. Help: /help",
        ),
        (
            "/rat 494",
            None,
            "Не знаю команду /rat. Список команд: /help",
            "Unknown command /rat. The list of commands: /help",
        ),
        (
            "/rate Молодец",
            None,
            "Укажите номер сессии после /rate, например: /rate 494 5 Молодец",
            "Put the session number after /rate, for example: /rate 494 5 Well done",
        ),
        (
            "/rate 1abc 5",
            None,
            (
                "«1abc» — не номер сессии: нужно целое число больше нуля, например: "
                "/rate 494 5 Молодец"
            ),
            (
                "“1abc” is not a session number: it must be a whole number above zero, "
                "for example: /rate 494 5 Well done"
            ),
        ),
        (
            "/rate 4940000000 5",
            None,
            (
                "Номер сессии 4940000000 слишком большой (не больше 2147483647). "
                "Проверьте номер, например: /rate 494 5 Молодец"
            ),
            (
                "Session number 4940000000 is too large (at most 2147483647). "
                "Check the number, for example: /rate 494 5 Well done"
            ),
        ),
        (
            "/rate 494 7 Молодец",
            None,
            (
                "Оценка «7» не подходит: нужно целое число от 1 до 5. "
                "Исправленный вариант: /rate 494 5 Молодец"
            ),
            (
                "Rating “7” does not fit: it must be a whole number from 1 to 5. "
                "Corrected: /rate 494 5 Молодец"
            ),
        ),
        (
            "/rate 494 Молодец",
            CHAT,
            (
                "Оценка «494» не подходит: нужно целое число от 1 до 5, например: "
                "/rate 5 Молодец\n"
                "Если 494 — номер другой сессии, поставьте перед ним #: /rate #494 Молодец"
            ),
            (
                "Rating “494” does not fit: it must be a whole number from 1 to 5, for example: "
                "/rate 5 Молодец\nIf 494 is another session's number, put # before it: "
                "/rate #494 Молодец"
            ),
        ),
        (
            "/rate 494 5 " + "ж" * 12345,
            None,
            (
                "Комментарий слишком длинный: 12\u00a0345 символов, а Битрикс24 хранит не больше "
                "10\u00a0000. Сократите его и отправьте снова: /rate 494 5 " + "ж" * 30 + "…"
            ),
            (
                "The comment is too long: 12,345 characters, and Bitrix24 keeps at most 10,000. "
                "Shorten it and send again: /rate 494 5 " + "ж" * 30 + "…"
            ),
        ),
        # What the user wrote is echoed as plain text (a word joiner after each `[`), and cut
        # after that: a tag at the cut stays inert.
        (
            "/rat[USER=1]",
            None,
            f"Не знаю команду /rat[{J}USER=1]. Список команд: /help",
            f"Unknown command /rat[{J}USER=1]. The list of commands: /help",
        ),
        (
            "/rate 494 7 [SEND=/rate 1 1]x[/SEND]",
            None,
            (
                "Оценка «7» не подходит: нужно целое число от 1 до 5. Исправленный "
                f"вариант: /rate 494 5 [{J}SEND=/rate 1 1]x[{J}/SEND]"
            ),
            (
                "Rating “7” does not fit: it must be a whole number from 1 to 5. "
                f"Corrected: /rate 494 5 [{J}SEND=/rate 1 1]x[{J}/SEND]"
            ),
        ),
        (
            "/rate 494 5 " + "ж" * 29 + "[URL=https://x]" + "ж" * 10_000,
            None,
            (
                "Комментарий слишком длинный: 10\u00a0044 символов, а Битрикс24 хранит не больше "
                f"10\u00a0000. Сократите его и отправьте снова: /rate 494 5 {'ж' * 29}[{J}…"
            ),
            (
                "The comment is too long: 10,044 characters, and Bitrix24 keeps at most 10,000. "
                f"Shorten it and send again: /rate 494 5 {'ж' * 29}[{J}…"
            ),
        ),
        (
            "/rate 1[USER=1] 5",
            None,
            (
                f"«1[{J}USER=1]» — не номер сессии: нужно целое число больше нуля, например: "
                "/rate 494 5 Молодец"
            ),
            (
                f"“1[{J}USER=1]” is not a session number: it must be a whole number above zero, "
                "for example: /rate 494 5 Well done"
            ),
        ),
    ],
)
def test_error_texts(text: str, chat_session_id: int | None, ru: str, en: str) -> None:
    """Each parse error reads, in both languages, as what is wrong plus a working example."""
    with pytest.raises(CommandParseError) as caught:
        parse_command(text, chat_session_id=chat_session_id)
    error = caught.value
    assert render(error.text_key, "ru", **error.params) == ru
    assert render(error.text_key, "en", **error.params) == en


@pytest.mark.parametrize(
    ("command", "text", "short"),
    [
        (rate(494, 5, "Молодец"), "/rate 494 5 Молодец", "/rate 5 Молодец"),
        (rate(494, 5), "/rate 494 5", "/rate 5"),
        (rate(494, comment="Долго"), "/rate 494 Долго", "/rate Долго"),
        (RatePrompt(session_id=494), "/rate 494", "/rate"),
        (HelpCommand(), "/help", "/help"),
    ],
)
def test_formats(command: Command, text: str, short: str) -> None:
    assert format_command(command) == text
    assert format_command(command, session="omitted") == short
    assert parse_command(short, chat_session_id=494) == command


@pytest.mark.parametrize(
    "comment", ["  Молодец  ", "\u00a0Молодец\n", "\u200bМолодец"], ids=["spaces", "nbsp", "zwsp"]
)
def test_a_comment_is_stored_without_surrounding_whitespace(comment: str) -> None:
    assert rate(494, 5, comment).comment == "Молодец"


@pytest.mark.parametrize("comment", ["", "   ", "\n\u00a0"])
def test_a_blank_comment_is_no_comment(comment: str) -> None:
    assert rate(494, 5, comment).comment is None


def test_a_rate_command_has_something_to_save() -> None:
    with pytest.raises(ValueError, match="a rating, a comment or both"):
        RateCommand(session_id=494)
