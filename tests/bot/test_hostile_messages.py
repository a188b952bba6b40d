"""Whole messages as a hostile portal user writes them, end to end over HTTP.

Random texts built from BB-codes, batch syntax, slashes, commands and digits of every script go
through the real service and the sandbox portal: no event is answered with a 5xx, no reply the
bot writes holds a live BB-code, nothing reaches an open line's customer, the REST senders keep
serving, and a supervisor's vote afterwards is saved (issue 8, "Done when").
"""

from __future__ import annotations

from typing import Final

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.texts import render
from tests.bbcodes import live_markup
from tests.harness import Service, drained

_PIECES: Final = (
    "/rate ", "/rate", "/Rate ", "/rat", "/help", "/оценка ", "/", "//", "\n", "\n/", " ",
    "\u00a0", "\u200b", "494 ", "#494 ", "№494", "5 ", "５", "４９４", "٥", "५", "5️⃣", "⁵", "⑤",
    "★★★", "5/5", "-1", "7 ", "$result[a1]", "$result[vote][x]", "$result_error[b]",
    "$result_total[c]", "$result_next[d]", "$result_time[e]", "[USER=1]", "[/USER]",
    "[user=all]", "[URL=https://evil.example]", "[/URL]", "[url]", "[SEND=/rate 494 1]",
    "[/SEND]", "[PUT=/rate 1 1]", "[CHAT=5]", "[CALL]", "[IMG]", "[DISK=1]", "[CODE]",
    "[/CODE]", "[b]", "[COLOR=red]", "[br]", ">>", "[", "]", "=", "Молодец",
)  # fmt: skip
_FRAGMENTS = st.sampled_from(_PIECES)
MESSAGES = st.lists(_FRAGMENTS | st.text(max_size=6), min_size=1, max_size=14).map("".join)
# A supervisor who may rate, a user who may not, an extranet user, and the customer of the
# open line chat1157.
AUTHORS = st.sampled_from([27, 28, 301, 1211])
WHERE = st.sampled_from(["bot", "chat1157", "chat2001"])


# Our own help text is the one reply with markup of ours ([b]); everything else must be inert.
_OURS = (render("help", "ru"), render("help", "en"))


def _user_markup(text: str) -> list[str]:
    for template in _OURS:
        text = text.replace(template, "")
    return live_markup(text)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=MESSAGES, author=AUTHORS, where=WHERE)
async def test_no_message_breaks_markup_the_senders_or_the_intake(
    service: Service, http: aiohttp.ClientSession, text: str, author: int, where: str
) -> None:
    before = {m.id for m in service.portal.messages.values()}
    to: int | str = service.bot_id if where == "bot" else where
    deliveries = await service.events.send_message(author, to, text)
    assert all(d.status is not None and d.status < 500 for d in deliveries), deliveries
    await drained(service)
    written = [
        m
        for m in service.portal.messages.values()
        if m.id not in before and m.author_id == service.bot_id
    ]
    for message in written:
        assert _user_markup(message.text) == [], message.text
        assert not message.to_customer, message.text
    if author != 27:  # someone who may not rate: one answer a message at most
        assert len(written) <= 1, [m.text for m in written]
    if author == 1211 and where == "chat1157":  # a customer in their own line: none at all
        assert written == [], [m.text for m in written]
    async with http.get(service.server.make_url("/readyz")) as ready:
        assert ready.status == 200, await ready.text()


async def test_after_the_storm_a_supervisor_s_vote_is_saved(service: Service) -> None:
    for text in ("/rat$result[a1]", "[USER=1]/rate 494 [SEND=x]", "/rate 494 5 $result[vote]"):
        for _ in range(5):
            await service.events.send_message(28, service.bot_id, text)
    await drained(service)
    reply = await service.reply_to(27, service.bot_id, "/rate 495 5 [b]Итог[/b] $result[x]")
    assert service.portal.sessions[495].comment_head == "[b]Итог[/b] $result[x]"
    assert reply.text.startswith("✅")
    assert _user_markup(reply.text) == []
