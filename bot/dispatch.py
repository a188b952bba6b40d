"""run_command(): parse -> authorise -> handler -> reply, and the ONE place that maps every
exception to what the user is told."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from bot.commands import HelpCommand, RatePrompt, parse_command
from bot.config import UserAllowList
from bot.errors import (
    BitrixError,
    BitrixRateLimited,
    BitrixServerError,
    BitrixUnavailable,
    CommandParseError,
    NotSupervisor,
    UserFacingError,
)
from bot.models import IncomingCommand, Reply, Route
from bot.ports import SessionVotes
from bot.texts import Lang, render
from bot.usage import counting_rest_requests
from handlers.help import help_reply
from handlers.rate import prompt, rate

log = structlog.get_logger(__name__)

SendReply = Callable[[Route, Reply, float], Awaitable[None]]


@dataclass(frozen=True)
class Services:
    """What the use-cases need, built once in the composition root."""

    votes: SessionVotes
    supervisors: UserAllowList


@dataclass
class Handled:
    """A command's reply and the fields of its canonical log line."""

    reply: Reply
    outcome: str
    fields: dict[str, Any]


async def run_command(incoming: IncomingCommand, services: Services) -> Handled:
    """Run one command; never raises: every failure becomes a reply saying what happened."""
    lang = incoming.language
    fields: dict[str, Any] = {"command": None}
    try:
        reply, outcome = await _execute(incoming, services, fields)
    except CommandParseError as error:
        fields["error"] = error.text_key
        return Handled(_text(error, lang), "invalid", fields)
    except UserFacingError as error:
        return Handled(_text(error, lang), error.text_key.rsplit(".", 1)[-1], fields)
    except BitrixError as error:
        log.warning(
            "command.bitrix_error",
            method=error.method,
            code=error.code,
            status=error.status,
            description=error.description,
        )
        fields["error"] = error.code
        return Handled(Reply(text=render(_bitrix_text(error), lang)), "bitrix_error", fields)
    except Exception:
        log.exception("command.crashed", text_length=len(incoming.text))
        return Handled(Reply(text=render("error.internal", lang)), "crashed", fields)
    return Handled(reply, outcome, fields)


async def _execute(
    incoming: IncomingCommand, services: Services, fields: dict[str, Any]
) -> tuple[Reply, str]:
    """Parse, authorise and run; raises for whatever went wrong. Fills the log fields."""
    lang = incoming.language
    command = parse_command(incoming.text, chat_session_id=incoming.chat_session_id)
    if isinstance(command, HelpCommand):
        fields["command"] = "help"
        return help_reply(command, lang), "help"
    fields |= {"command": "rate", "session_id": command.session_id}
    if not services.supervisors.allows(incoming.author_id):
        raise NotSupervisor(user_id=incoming.author_id)
    if isinstance(command, RatePrompt):
        return await prompt(command, services.votes, lang), "prompted"
    fields["rating"] = command.rating
    return await rate(command, services.votes, lang), "saved"


async def handle(incoming: IncomingCommand, services: Services, send: SendReply) -> None:
    """Run a command, deliver its reply, and write the one `command.handled` line."""
    started = time.monotonic()
    with counting_rest_requests() as requests:
        handled = await run_command(incoming, services)
        delivered = True
        try:
            await send(incoming.route, handled.reply, incoming.received_at)
        except BitrixError as error:
            delivered = False
            log.warning("reply.failed", code=error.code, method=error.method)
    log.info(
        "command.handled",
        **handled.fields,
        outcome=handled.outcome,
        source=incoming.source,
        user_id=incoming.author_id,
        key=incoming.key,
        delivered=delivered,
        rest_requests=requests[0],
        duration_ms=round((time.monotonic() - started) * 1000, 1),
    )


def _text(error: UserFacingError, lang: Lang) -> Reply:
    return Reply(text=render(error.text_key, lang, **error.params))


def _bitrix_text(error: BitrixError) -> str:
    if isinstance(error, BitrixRateLimited):
        return "error.portal_busy"
    if isinstance(error, BitrixUnavailable | BitrixServerError):
        return "error.portal_unavailable"
    return "error.internal"
