"""What one message may cost, whichever transport carried it: the core's rules for turning a
message's commands into jobs.

A transport's adapter translates one message into IncomingCommands, one per command line, and
hands them to `admit` before they are stored:

- a customer (an open line's connector user) gets nothing at all: any reply could reach them;
- someone who may not rate (not on the supervisors' list, or an extranet user) gets at most one
  reply per message: the first command's (help, a parse error or the refusal); an author the
  event does not describe counts as staff here, and the core verifies them before a vote, and
  before anything at all in the jobs that follow the first (`follows`), which then say nothing
  to someone who may not rate;
- a supervisor's message runs at most MAX_COMMANDS_PER_MESSAGE commands, and the rest get one
  notice saying how many were not run.

So one message of 3,300 `/help` lines is at most 11 jobs and 11 replies, never 3,300.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import structlog

from bot.models import IncomingCommand, TooManyCommands

log = structlog.get_logger(__name__)

MAX_COMMANDS_PER_MESSAGE: Final = 10


def admit(
    commands: Sequence[IncomingCommand],
    *,
    message_key: str,
    may_rate: Callable[[int], bool],
    already: int = 0,
) -> list[IncomingCommand]:
    """The jobs to store for the commands of ONE message (one author).

    `message_key` is the prefix every command key of the message shares, whichever event
    delivered it: the notice is keyed by it, so a redelivery adds no second notice.
    `may_rate` is asked about the Bitrix24 user a command acts as (`acting_user`).
    `already` counts the message's commands an earlier delivery admitted (fetch mode: one
    message's command events may come over several pages); they count against the bounds.
    """
    if not commands:
        return []
    first = commands[0]
    # One message has one author: if any of its events shows a customer (or a guest), they
    # all do. Events that disagree are damaged or forged, and the stricter reading wins.
    kinds = {c.author_kind for c in commands}
    if "customer" in kinds:
        log.info("intake.customer_ignored", user_id=first.author_id, commands=len(commands))
        return []
    # A Telegram author acts as their linked Bitrix24 user: unlinked, they may not rate.
    acting = first.acting_user()
    if "extranet" in kinds or acting is None or not may_rate(acting):
        if len(commands) > 1 or already:
            log.info("intake.one_reply", user_id=first.author_id, commands=len(commands))
        return [] if already else [first]
    # An author the event does not describe is verified by each job: the jobs after the first
    # are marked, so that only the first answers should they turn out not to be staff.
    taken = [
        c if i == 0 and not already else c.model_copy(update={"follows": True})
        for i, c in enumerate(commands)
    ]
    room = max(MAX_COMMANDS_PER_MESSAGE - already, 0)
    if len(commands) <= room:
        return taken
    skipped = len(commands) - room
    log.info("intake.commands_skipped", user_id=first.author_id, skipped=skipped)
    notice = first.model_copy(
        update={
            "key": f"{message_key}:more",
            "text": "",
            "notice": TooManyCommands(taken=MAX_COMMANDS_PER_MESSAGE, skipped=skipped),
            "follows": True,
        }
    )
    return [*taken[:room], notice]
