"""What users write, end to end over HTTP: the bot echoes it as plain text (never a live
BB-code, protocol notes §00 item 4), cut to a sane length, while Bitrix24 stores the comment
exactly as written; digits of every script mean what they look like."""

from __future__ import annotations

import pytest

from bot.markup import JOINER
from tests.bbcodes import HOSTILE, live_markup, open_bidi
from tests.harness import Service, ServiceFactory

# Every hostile text at once, with a line of its own for each: what anyone may have typed into
# a session's comment in the portal's UI.
EVERYTHING: str = "\n".join(HOSTILE)


def shown(text: str) -> str:
    """A reply as the supervisor reads it: the invisible marks are not seen."""
    return text.replace(JOINER, "")


@pytest.mark.parametrize("comment", HOSTILE)
async def test_a_hostile_comment_is_stored_verbatim_and_echoed_as_plain_text(
    service: Service, comment: str
) -> None:
    reply = await service.reply_to(27, service.bot_id, f"/rate 494 5 {comment}")
    assert service.portal.sessions[494].comment_head == comment.strip()
    assert reply.text.startswith("✅ Сохранено.")
    assert live_markup(reply.text) == []
    assert comment.strip() in shown(reply.text)


@pytest.mark.parametrize("name", HOSTILE)
async def test_an_unknown_command_name_is_quoted_as_plain_text(
    service: Service, name: str
) -> None:
    reply = await service.reply_to(27, service.bot_id, f"/{name}")
    assert reply.text.startswith("Не знаю команду /")
    assert live_markup(reply.text) == []


@pytest.mark.parametrize("where", ["the /rate prompt", "a vote Bitrix24 did not store"])
async def test_a_stored_comment_is_shown_as_plain_text(
    start_service: ServiceFactory, where: str
) -> None:
    """The stored comment comes from Bitrix24: anyone may have written it in the UI."""
    service = await start_service()
    portal = service.portal
    portal.sessions[494].comment_head = EVERYTHING
    text = "/rate 494"
    if where == "a vote Bitrix24 did not store":
        portal.votes_ignored = True  # head.vote answers true and stores nothing (§7.3)
        text = "/rate 494 5"
    reply = await service.reply_to(27, service.bot_id, text)
    assert live_markup(reply.text) == []
    assert EVERYTHING[:200] in shown(reply.text)
    assert portal.sessions[494].comment_head == EVERYTHING


@pytest.mark.parametrize(
    ("text", "echo"),
    [
        # A tag exactly at the cut of a stored comment (300) and of an example (30).
        ("/rate 494", "x" * 299 + "[…"),
        ("/rate 494 5 " + "ж" * 29 + "[URL=https://x]" + "ж" * 10_000, "ж" * 29 + "[…"),
        ("/rate 494 7 [SEND=/rate 1 1]x[/SEND]", "/rate 494 5 [SEND=/rate 1 1]x[/SEND]"),
        ("/rat[USER=1]", "/rat[USER=1]"),
        ("/rate 1[CALL]123[/CALL] 5", "1[CALL]123[/CALL]"),
        # A 10,000-character token is quoted by its first 40 characters.
        ("/rat" + "[b]" * 3_400, "/rat" + "[b]" * 12 + "…"),
        ("/rate 494 " + "4" * 10_000, "4" * 40 + "…"),
    ],
)
async def test_what_a_user_typed_is_quoted_as_plain_text_and_cut(
    service: Service, text: str, echo: str
) -> None:
    service.portal.sessions[494].comment_head = "x" * 299 + "[URL=https://x]a[/URL]"
    reply = await service.reply_to(27, service.bot_id, text)
    assert live_markup(reply.text) == []
    assert echo in shown(reply.text)
    assert len(reply.text) < 600


@pytest.mark.parametrize(
    "text",
    [
        "/rate ４９４ ٥ Молодец",
        "/rate ٤٩٤ ५ Молодец",
        "/rate #494 5️⃣ Молодец",
        "/rate 494 ⑤ Молодец",
    ],
)
async def test_digits_of_every_script_mean_what_they_look_like(
    service: Service, text: str
) -> None:
    reply = await service.reply_to(27, service.bot_id, text)
    session = service.portal.sessions[494]
    assert (session.vote_head, session.comment_head) == (5, "Молодец")
    assert reply.text == "✅ Сохранено. Сессия 494: ★★★★★ 5/5, комментарий «Молодец»."


async def test_a_digit_out_of_range_in_another_script_is_refused_not_stored(
    service: Service,
) -> None:
    reply = await service.reply_to(27, service.bot_id, "/rate 494 ٧ Молодец")
    assert reply.text.startswith("Оценка «٧» не подходит")
    assert service.votes() == 0


@pytest.mark.parametrize(
    ("text", "where", "quoted"),
    [
        # A rating with the punctuation of a sentence after it, as people write.
        ("/rate 494 5, молодец", "bot", "5,"),
        ("/rate 494 5. Отлично", "bot", "5."),
        ("/rate 494 ５! Отлично", "bot", "５!"),
        ("/rate 494 1) долго 2) грубо", "bot", "1)"),
        ("/rate 494 5★", "bot", "5★"),
        ("/rate 494 4stars", "bot", "4stars"),
        # Minus signs of other kinds: a negative rating, as `-1` is.
        ("/rate 494 –1 плохо", "bot", "–1"),
        ("/rate 494 ‐5", "bot", "‐5"),
        # Inside the open line's own chat, where the session may be left out.
        ("/rate 5, молодец", "chat1157", "5,"),
    ],
)
async def test_a_number_glued_to_other_characters_is_refused_not_stored_as_a_comment(
    service: Service, text: str, where: str, quoted: str
) -> None:
    """The attack: a rating followed by a comma (`5, молодец`) was stored as the comment
    "5, молодец" with no rating. A number right after the session is the rating: written so
    that it cannot be read, it is refused with the rating error, and nothing is stored."""
    to: int | str = service.bot_id if where == "bot" else where
    reply = await service.reply_to(27, to, text)
    assert reply.text.startswith(f"Оценка «{quoted}» не подходит"), reply.text
    assert service.votes() == 0
    session = service.portal.sessions[494]
    assert (session.vote_head, session.comment_head) == (0, "")


RLO, RLI, PDF = "\u202e", "\u2067", "\u202c"


@pytest.mark.parametrize(
    ("text", "stored", "ours"),
    [
        (f"/rate 494 5 {RLO}цедолом", "", "»."),
        (f"/rate 494 5 {RLI}{RLO}x{PDF}", "", "»."),
        # Inside a command's name or session it is refused (bot/commands.py), quoted.
        (f"/rat{RLO}x", "", "» есть невидимые символы"),
        (f"/rate 49{RLO}4 5", "", "» есть невидимые символы"),
        (f"/rate 494 {RLO}x 5", "", "»."),
        ("/rate 494", f"{RLO}" + "ж" * 400, "». Выберите оценку:"),
    ],
)
async def test_a_bidi_override_in_user_text_ends_where_the_user_text_ends(
    service: Service, text: str, stored: str, ours: str
) -> None:
    """The attack (Trojan Source): a right-to-left override in a comment, a stored comment or
    a command name, left open, reverses the bot's own words after the quote, so the reply can
    be made to read otherwise than it says. What the user wrote is closed where it ends."""
    service.portal.sessions[494].comment_head = stored
    reply = await service.reply_to(27, service.bot_id, text)
    assert ours in reply.text, reply.text
    assert open_bidi(reply.text[: reply.text.rindex(ours)]) == 0, ascii(reply.text)
