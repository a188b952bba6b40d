"""The vote feed (TELEGRAM_FEED_CHAT_ID): every saved vote as one short line in one chat.

A vote's feed line is a job of its own, queued with the vote's decided reply in one
transaction (Storage.decide) under the vote's job key plus `:feed`: exactly one line per saved
vote, sent through the same queue, retries and rate-limit handling as every reply, and never
for a vote that was refused (no decision says "saved").
"""

from __future__ import annotations

import re
from typing import Final

from bot.models import IncomingCommand, Reply, TelegramRoute
from bot.ports import SessionVote
from bot.storage import Decided
from bot.texts import render
from handlers.rate import describe

FEED_OUTCOME: Final = "feed"
# Whatever a client breaks a line at: newlines, CR, VT, FF, the file/group/record separators,
# NEL, the Unicode line and paragraph separators.
_LINE_BREAKS: Final = re.compile("[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]+")


def feed_job(incoming: IncomingCommand, vote: SessionVote, chat_id: int) -> Decided:
    """The feed line of a vote `incoming` saved, as a job whose reply is decided."""
    lang = incoming.language
    acting = incoming.acting_user()
    text = render(
        "feed.vote",
        lang,
        user_id=acting if acting is not None else incoming.author_id,
        source=render(f"feed.source.{incoming.source}", lang),
        **describe(vote.model_copy(update={"comment": one_line(vote.comment)}), lang),
    )
    line = incoming.model_copy(
        update={
            "key": f"{incoming.key}:feed",
            "text": "",
            "notice": None,
            "follows": False,
            "route": TelegramRoute(chat_id=chat_id),
        }
    )
    return Decided(incoming=line, reply=Reply(text=text), outcome=FEED_OUTCOME)


def one_line(text: str) -> str:
    """`text` with its line breaks shown as " ↵ "."""
    return _LINE_BREAKS.sub(" ↵ ", text.strip())
