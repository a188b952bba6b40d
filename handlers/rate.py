"""`/rate`: save a session's head vote and prove it was saved.

Current Bitrix24 builds refuse a vote they cannot store (the port raises VoteRefused, protocol
notes §00 item 1), but older ones answer `true` even when nothing was stored (§7.3), so
success is claimed only when the vote read back after writing is what was asked.
"""

from __future__ import annotations

from typing import Final

from bot.commands import RateCommand, RatePrompt
from bot.errors import BitrixError, BitrixRateLimited, VoteNotAllowed, VoteNotSaved
from bot.markup import shorten
from bot.models import Reply, ReplyButton
from bot.ports import SessionVote, SessionVotes
from bot.texts import Lang, render

STARS: Final = "★★★★★"
NO_STARS: Final = "☆☆☆☆☆"
# A stored comment is shown up to this many characters; anyone may have written it in the UI.
COMMENT_SHOWN: Final = 300


async def rate(command: RateCommand, votes: SessionVotes, lang: Lang) -> tuple[Reply, SessionVote]:
    """Store the rating and/or comment; the one not given keeps its stored value. The reply,
    and the vote as stored (for the vote feed)."""
    try:
        result = await votes.vote(
            command.session_id, rating=command.rating, comment=command.comment
        )
    except BitrixError as error:
        if not error.retryable or isinstance(error, BitrixRateLimited):
            raise  # refused before the portal did anything
        return await _stored_after_all(command, votes, lang, error)
    # Without a first read (the port skips it when it is not needed), what was not given is
    # what Bitrix24 keeps untouched: the read-back shows it.
    before, after = result.before or result.after, result.after
    wanted_rating = command.rating if command.rating is not None else before.rating
    wanted_comment = command.comment if command.comment is not None else before.comment
    if not before.can_vote:
        raise VoteNotAllowed(**describe(after, lang))
    if (after.rating, after.comment) != (wanted_rating, wanted_comment):
        raise VoteNotSaved(**describe(after, lang))
    return Reply(text=render("rate.saved", lang, **describe(after, lang)), settled=True), after


async def _stored_after_all(
    command: RateCommand, votes: SessionVotes, lang: Lang, error: BitrixError
) -> tuple[Reply, SessionVote]:
    """The vote's answer was lost (a gateway's 502/504, a timeout), but the portal may have
    stored it all the same: what it holds now tells. If it cannot say, or holds something
    else, the failure stands (retried later, or reported)."""
    try:
        now = await votes.read(command.session_id)
    except BitrixError:
        raise error from None
    if (command.rating is None or now.rating == command.rating) and (
        command.comment is None or now.comment == command.comment
    ):
        return Reply(text=render("rate.saved", lang, **describe(now, lang)), settled=True), now
    raise error


async def prompt(command: RatePrompt, votes: SessionVotes, lang: Lang) -> Reply:
    """`/rate 494` alone: show the current vote and offer 1-5 stars as buttons."""
    current = await votes.read(command.session_id)
    buttons = tuple(
        ReplyButton(text=STARS[:n], command="rate", params=f"{command.session_id} {n}")
        for n in range(1, 6)
    )
    return Reply(text=render("rate.prompt", lang, **describe(current, lang)), buttons=buttons)


def describe(vote: SessionVote, lang: Lang) -> dict[str, str | int]:
    """The text parameters for a stored vote: session, rating, comment."""
    if 1 <= vote.rating <= len(STARS):
        stars = STARS[: vote.rating] + NO_STARS[vote.rating :]
        rating = render("rate.stars", lang, stars=stars, value=vote.rating)
    else:
        rating = render("rate.no_rating", lang)
    if vote.comment:
        # Neutralised, then cut (bot/markup.py): a cut can never leave a tag open.
        comment = render("rate.comment", lang, comment=shorten(vote.comment, COMMENT_SHOWN))
    else:
        comment = render("rate.no_comment", lang)
    return {"session": vote.session_id, "rating": rating, "comment": comment}
