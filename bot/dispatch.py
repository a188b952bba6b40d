"""run_command(): parse -> authorise -> handler -> reply, and the ONE place that maps every
exception to what the user is told."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from bot.commands import HelpCommand, RateCommand, RatePrompt, parse_command
from bot.config import UserAllowList
from bot.errors import (
    BitrixError,
    BitrixRateLimited,
    BitrixServerError,
    BitrixUnavailable,
    CommandParseError,
    NotStaff,
    NotSupervisor,
    UserFacingError,
)
from bot.models import SILENT, IncomingCommand, Reply, Route
from bot.ports import People, SessionVotes
from bot.texts import Lang, render
from handlers.help import help_reply
from handlers.rate import prompt, rate

log = structlog.get_logger(__name__)

SendReply = Callable[[Route, Reply, float], Awaitable[None]]


def command_fields(incoming: IncomingCommand) -> dict[str, Any]:
    """command, session_id and rating of a command's text, for logs and the audit."""
    try:
        command = parse_command(incoming.text, chat_session_id=incoming.chat_session_id)
    except CommandParseError:
        return {"command": None, "session_id": None, "rating": None}
    if isinstance(command, HelpCommand):
        return {"command": "help", "session_id": None, "rating": None}
    rating = command.rating if isinstance(command, RateCommand) else None
    return {"command": "rate", "session_id": command.session_id, "rating": rating}


@dataclass(frozen=True)
class Services:
    """What the use-cases need, built once in the composition root."""

    votes: SessionVotes
    supervisors: UserAllowList
    people: People


@dataclass(frozen=True)
class Handled:
    """A command's reply, and its outcome in a word for the log line, the audit and metrics:
    saved, prompted, help, a parse error's key, a refusal's name, bitrix_error:<code>, crashed."""

    reply: Reply
    outcome: str


class RetryLater(Exception):
    """The portal is unreachable or overloaded: run the command again later."""

    def __init__(self, error: BitrixError) -> None:
        super().__init__(error.code)
        self.error = error


async def run_command(
    incoming: IncomingCommand, services: Services, *, may_retry: bool = False
) -> Handled:
    """Run one command; every failure becomes a reply saying what happened, except that with
    `may_retry` a passing portal failure raises RetryLater instead."""
    lang = incoming.language
    try:
        reply, outcome = await _execute(incoming, services)
    except CommandParseError as error:
        return Handled(_text(error, lang), error.text_key)
    except UserFacingError as error:
        return Handled(_text(error, lang), error.text_key.rsplit(".", 1)[-1])
    except BitrixError as error:
        if may_retry and error.retryable:
            raise RetryLater(error) from error
        log.warning(
            "command.bitrix_error",
            method=error.method,
            code=error.code,
            status=error.status,
            description=error.description,
        )
        return Handled(Reply(text=render(_bitrix_text(error), lang)), f"bitrix_error:{error.code}")
    except Exception:
        log.exception("command.crashed", text_length=len(incoming.text))
        return Handled(Reply(text=render("error.internal", lang)), "crashed")
    return Handled(reply, outcome)


async def _execute(incoming: IncomingCommand, services: Services) -> tuple[Reply, str]:
    """Parse, authorise and run; raises for whatever went wrong."""
    lang = incoming.language
    if incoming.follows and not await _may_rate(incoming, services):
        # The message's first job answers someone who may not rate, once (bot/intake.py).
        return SILENT, "silent"
    if incoming.notice is not None:  # not a command: what the intake left out of a message
        notice = incoming.notice
        text = render("intake.too_many_commands", lang, taken=notice.taken, skipped=notice.skipped)
        return Reply(text=text), notice.kind
    command = parse_command(incoming.text, chat_session_id=incoming.chat_session_id)
    if isinstance(command, HelpCommand):
        return help_reply(command, lang), "help"
    if not await _authorise(incoming, services):
        return SILENT, "customer"  # any answer could reach the customer
    if isinstance(command, RatePrompt):
        return await prompt(command, services.votes, lang), "prompted"
    return await rate(command, services.votes, lang), "saved"


async def _authorise(incoming: IncomingCommand, services: Services) -> bool:
    """Whether the author may rate: raises NotStaff or NotSupervisor to say why not, and is
    False for an open line's customer, who is told nothing.

    Only staff rate, whatever B24_SUPERVISOR_IDS says (`*` included). A customer's commands
    never become jobs (bot/intake.py), but one the event did not show as a customer (a typed
    command has no IS_CONNECTOR) is found by the lookup. An author the event did not describe
    is looked up once they are on the list, so a stranger's commands cost no lookup.
    """
    kind = incoming.author_kind
    if kind == "unverified" and services.supervisors.allows(incoming.author_id):
        kind = await services.people.kind(incoming.author_id)
        kind = "extranet" if kind == "unverified" else kind  # not described: not staff
    if kind == "customer":
        return False
    if kind == "extranet":
        raise NotStaff
    if not services.supervisors.allows(incoming.author_id):
        raise NotSupervisor(user_id=incoming.author_id)
    return True


async def _may_rate(incoming: IncomingCommand, services: Services) -> bool:
    """`_authorise` without the reasons."""
    try:
        return await _authorise(incoming, services)
    except (NotStaff, NotSupervisor):
        return False


def _text(error: UserFacingError, lang: Lang) -> Reply:
    return Reply(text=render(error.text_key, lang, **error.params))


def _bitrix_text(error: BitrixError) -> str:
    if isinstance(error, BitrixRateLimited):
        return "error.portal_busy"
    if isinstance(error, BitrixUnavailable | BitrixServerError):
        return "error.portal_unavailable"
    return "error.internal"
