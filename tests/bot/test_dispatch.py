"""Who may rate from Telegram (bot/dispatch.py `_authorise`): a Telegram command acts as the
Bitrix24 user its author is linked to, who is looked up on the portal like any author an event
does not describe, and must be staff and on B24_SUPERVISOR_IDS."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.bitrix.client import BitrixClient
from bot.dispatch import run_command
from bot.intake import admit
from bot.models import AuthorKind, ButtonNotOffered, NoAuthor, TooManyCommands
from bot.sandbox.portal import Portal
from bot.telegram.replies import MAX_ALERT
from bot.texts import render
from tests.linked import from_telegram, services

NOT_LINKED = render("link.not_linked", "en")


@pytest.mark.parametrize(
    ("b24_user", "kind", "outcome", "reply"),
    [
        (None, "unverified", "not_linked", NOT_LINKED),
        # Linked to an extranet (guest) user on the list: not staff. The adapter's author
        # kind does not spare the lookup: a Telegram update says nothing about Bitrix24.
        (301, "unverified", "not_staff", render("rate.not_staff", "en")),
        (301, "staff", "not_staff", render("rate.not_staff", "en")),
        # Staff, not on the list: the reply names the linked Bitrix24 user, not the Telegram id.
        (28, "unverified", "not_supervisor", render("rate.not_supervisor", "en", user_id=28)),
        (1211, "unverified", "customer", ""),  # an open line's customer: told nothing
        (27, "unverified", "saved", None),
    ],
)
async def test_a_telegram_command_is_authorised_as_its_linked_bitrix24_user(
    make_client: Callable[..., BitrixClient],
    portal: Portal,
    b24_user: int | None,
    kind: AuthorKind,
    outcome: str,
    reply: str | None,
) -> None:
    incoming = from_telegram("/rate 494 5 Молодец", b24_user=b24_user, kind=kind)
    handled = await run_command(incoming, services(make_client, None))
    assert handled.outcome == outcome
    if reply is not None:
        assert handled.reply.text == reply
    saved = (portal.sessions[494].vote_head, portal.sessions[494].comment_head)
    assert saved == ((5, "Молодец") if outcome == "saved" else (0, ""))


async def test_an_unlinked_author_s_later_commands_of_a_message_stay_silent(
    make_client: Callable[..., BitrixClient],
) -> None:
    later = from_telegram("/rate 494 5", follows=True)
    handled = await run_command(later, services(make_client, None))
    assert (handled.reply.text, handled.outcome) == ("", "silent")


@pytest.mark.parametrize(("b24_user", "jobs"), [(None, 1), (28, 1), (27, 3)])
def test_the_intake_answers_someone_who_may_not_rate_once_per_message(
    b24_user: int | None, jobs: int
) -> None:
    """The adapter's `may_rate` is asked about the linked Bitrix24 user (here 27 only)."""
    message = [
        from_telegram(f"/rate 49{n} 5", b24_user=b24_user, key=f"tg:1:{n}") for n in range(3)
    ]
    admitted = admit(message, message_key="tg:1", may_rate=lambda user: user == 27)
    assert len(admitted) == jobs


@pytest.mark.parametrize(
    ("notice", "reply"),
    [
        (NoAuthor(), render("notice.no_author", "en")),
        (ButtonNotOffered(), render("notice.button_not_offered", "en")),
        (
            TooManyCommands(taken=10, skipped=3),
            render("intake.too_many_commands", "en", taken=10, skipped=3),
        ),
    ],
)
async def test_a_notice_is_answered_with_its_text_and_runs_nothing(
    make_client: Callable[..., BitrixClient],
    portal: Portal,
    notice: NoAuthor | ButtonNotOffered | TooManyCommands,
    reply: str,
) -> None:
    """Notices skip authorisation (nobody, or anybody, is behind them): they only say."""
    incoming = from_telegram("", b24_user=27).model_copy(update={"notice": notice})
    handled = await run_command(incoming, services(make_client, None))
    assert (handled.reply.text, handled.outcome) == (reply, notice.kind)
    assert len(handled.reply.text) <= MAX_ALERT  # a refused press is told in an alert
    assert portal.sessions[494].vote_head == 0
