"""`/rate`: save a session's head vote and prove it was saved.

Current Bitrix24 builds refuse a vote they cannot store (the port raises VoteRefused, protocol
notes §00 item 1), but older ones answer `true` even when nothing was stored (§7.3), so
success is claimed only when the vote read back after writing is what was asked.
"""

from __future__ import annotations

from typing import Final

from bot.commands import RateCommand, RatePrompt
from bot.errors import VoteNotAllowed, VoteNotSaved
from bot.markup import shorten
from bot.models import Reply, ReplyButton
from bot.ports import SessionVote, SessionVotes
from bot.texts import Lang, render

STARS: Final = "★★★★★"
NO_STARS: Final = "☆☆☆☆☆"
# A stored comment is shown up to this many characters; anyone may have written it in the UI.
COMMENT_SHOWN: Final = 300


async def rate(command: RateCommand, votes: SessionVotes, lang: Lang) -> Reply:
    """Store the rating and/or comment; the one not given keeps its stored value."""
    result = await votes.vote(command.session_id, rating=command.rating, comment=command.comment)
    # Without a first read (the port skips it when it is not needed), what was not given is
    # what Bitrix24 keeps untouched: the read-back shows it.
    before, after = result.before or result.after, result.after
    wanted_rating = command.rating if command.rating is not None else before.rating
    wanted_comment = command.comment if command.comment is not None else before.comment
    if not before.can_vote:
        raise VoteNotAllowed(**describe(after, lang))
    if (after.rating, after.comment) != (wanted_rating, wanted_comment):
        raise VoteNotSaved(**describe(after, lang))
    return Reply(text=render("rate.saved", lang, **describe(after, lang)), settled=True)


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
