"""The aiohttp handler for Bitrix24 bot events: verify the source, parse, de-duplicate, queue,
and answer at once. It translates; the core (dispatch) decides.

Bitrix24 never re-sends an event (protocol notes §1.1), so the answer is quick and the work
runs behind the job queue; a full queue is refused with 503 rather than held in memory, and so
is an event the storage failed to take (never a 500). What one message may cost is the core's
decision (bot/intake.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog
from aiohttp import web
from pydantic import ValidationError

from bot.bitrix.events import (
    CommandEvent,
    DeleteEvent,
    JoinEvent,
    MalformedEvent,
    MessageEvent,
    commands_of,
    message_key,
    parse_event,
    welcome_of,
)
from bot.bitrix.form import FormError, unflatten_form
from bot.config import UserAllowList
from bot.intake import admit
from bot.jobs import JobRunner
from bot.metrics import Metrics
from bot.models import IncomingCommand
from bot.storage import Storage

log = structlog.get_logger(__name__)

# An event is a few kilobytes; a 20,000-character message percent-encoded is under 200 KB.
MAX_EVENT_BYTES: Final = 1024 * 1024
_FORM_TYPES: Final = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass
class EventIntake:
    """What the handler needs: the secrets to check, the job storage and its runner."""

    path_secret: str
    client_id: str
    application_token: str | None  # checked when configured (application mode, later)
    storage: Storage
    runner: JobRunner
    supervisors: UserAllowList  # who may rate: the rest get one reply per message
    queue_limit: int  # unfinished jobs at most; beyond it events are refused
    user_share: int  # unfinished jobs of one user at most; beyond it their events are refused
    metrics: Metrics
    clock: Callable[[], float]
    on_bot_deleted: Callable[[int], None]


INTAKE = web.AppKey("b24_intake", EventIntake)


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())


class _Rejected(Exception):
    def __init__(self, status: int, reason: str, **fields: object) -> None:
        super().__init__(reason)
        self.status, self.reason, self.fields = status, reason, fields


async def receive_event(request: web.Request) -> web.Response:
    """POST /b24/events/<secret>?CLIENT_ID=…: one Bitrix24 bot event."""
    intake = request.app[INTAKE]
    try:
        _verify_source(request, intake)
        form = await _read_form(request)
        _verify_application_token(form, intake)
        event = parse_event(form)
    except MalformedEvent:
        return _reject(intake, _Rejected(400, "no_event"))
    except _Rejected as rejected:
        return _reject(intake, rejected)
    except ValidationError as error:
        return _reject(intake, _Rejected(400, "malformed_event", errors=error.error_count()))
    if event is None:
        intake.metrics.events_rejected.labels(reason="unknown_event").inc()
        log.info("event.ignored", bitrix_event=str(form.get("event", ""))[:64])
        return web.json_response({"status": "ignored"})
    return await _accept(intake, event)


def _reject(intake: EventIntake, rejected: _Rejected) -> web.Response:
    intake.metrics.events_rejected.labels(reason=rejected.reason).inc()
    fields = rejected.fields
    log.warning("event.rejected", status=rejected.status, reason=rejected.reason, **fields)
    return web.json_response(
        {"status": "rejected", "reason": rejected.reason}, status=rejected.status
    )


def _verify_source(request: web.Request, intake: EventIntake) -> None:
    """The path secret and the CLIENT_ID Bitrix24 appends (§6.8), before the body is read."""
    if not _same(request.match_info["secret"], intake.path_secret):
        raise _Rejected(404, "path_secret")
    if not _same(request.query.get("CLIENT_ID", ""), intake.client_id):
        raise _Rejected(403, "client_id")
    if request.content_type not in _FORM_TYPES:
        raise _Rejected(415, "content_type", content_type=request.content_type[:64])


async def _read_form(request: web.Request) -> dict[str, object]:
    try:
        posted = await request.post()
        return unflatten_form((k, v) for k, v in posted.items() if isinstance(v, str))
    except (UnicodeDecodeError, ValueError, FormError):
        raise _Rejected(400, "unreadable_body") from None


def _verify_application_token(form: dict[str, object], intake: EventIntake) -> None:
    if intake.application_token is None:
        return
    auth = form.get("auth")
    token = auth.get("application_token") if isinstance(auth, dict) else None
    if not isinstance(token, str) or not _same(token, intake.application_token):
        raise _Rejected(403, "application_token")


async def _accept(
    intake: EventIntake, event: CommandEvent | MessageEvent | JoinEvent | DeleteEvent
) -> web.Response:
    now = intake.clock()
    intake.metrics.events_received.labels(event=event.event).inc()
    commands: list[IncomingCommand]
    if isinstance(event, DeleteEvent):
        intake.on_bot_deleted(event.data.BOT_ID)
        log.warning("bitrix.bot_deleted", bot_id=event.data.BOT_ID)
        return web.json_response({"status": "ok"})
    if isinstance(event, JoinEvent):
        welcome = welcome_of(event, now)
        commands = [welcome] if welcome else []
    else:
        commands = admit(
            commands_of(event, now),
            message_key=message_key(event),
            may_rate=intake.supervisors.allows,
        )
    # Committed before the 200: Bitrix24 never sends an event again (§1.1).
    fresh: list[str] | str = "shutting_down"
    if intake.runner.accepting:
        try:
            fresh = await intake.storage.enqueue(
                commands, limit=intake.queue_limit, user_limit=intake.user_share
            )
        except Exception as error:  # noqa: BLE001 - whatever the engine raises, never a 500
            # 503, not a 500: the event is lost either way (§1.1), and the answer says why.
            refused = _Rejected(503, "storage_error", error=type(error).__name__, exc_info=True)
            return _reject(intake, refused)
    if isinstance(fresh, str):  # why nothing was stored: user_share, queue_full, shutting_down
        author = commands[0].author_id if commands else None
        return _reject(intake, _Rejected(503, fresh, bitrix_event=event.event, user_id=author))
    intake.runner.wake()
    log.info(
        "event.accepted",
        bitrix_event=event.event,
        commands=len(fresh),
        duplicates=len(commands) - len(fresh),
    )
    return web.json_response({"status": "ok"})
