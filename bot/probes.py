"""The service's own endpoints for operators: /healthz, /readyz, /metrics."""

from __future__ import annotations

from typing import Final

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.bitrix.fetch import PollerStatus
from bot.state import BITRIX, COALESCER, CORE, METRICS, POLLER, BitrixState
from bot.storage import Storage
from bot.telegram.side import TELEGRAM

log = structlog.get_logger(__name__)

NOT_CONFIGURED: Final = (
    "not configured: set B24_WEBHOOK_URL to an inbound webhook of the portal with the scopes "
    "imbot, imopenlines, im (then `python -m bot check` checks the whole set-up)"
)


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process is up and serving."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: storage answers, the portal was reachable, the workers and the coalescer's
    senders run."""
    checks: dict[str, str] = {}
    app = request.app
    if BITRIX in app:
        core = app.get(CORE)
        checks["storage"] = "ok" if core and await _storage_answers(core.storage) else "failing"
        registered = app[BITRIX].registered.is_set()
        reachable = registered and app[METRICS].portal_reachable
        checks["portal"] = "ok" if reachable else _portal_problem(app[BITRIX], registered)
        checks["workers"] = "ok" if core and core.runner.alive() else "stopped"
        if COALESCER in app:
            checks["senders"] = "ok" if app[COALESCER].alive() else "stopped"
    else:
        # Nothing configured: the service answers probes and can do nothing else.
        checks["portal"] = NOT_CONFIGURED
    extra: dict[str, object] = {}
    if POLLER in app:
        checks["events"], extra["poller"] = _poller_check(app[POLLER].status())
    if TELEGRAM in app:
        status = app[TELEGRAM].status()
        checks["telegram"] = "ok" if status["state"] in ("polling", "webhook") else status["state"]
        extra["telegram_side"] = status
    ready = all(value == "ok" for value in checks.values())
    return web.json_response({"ready": ready, **checks, **extra}, status=200 if ready else 503)


def _portal_problem(state: BitrixState, registered: bool) -> str:  # noqa: FBT001
    if registered:
        return "unreachable"
    if state.refused:
        return state.refused
    return f"not registered: {state.problem}" if state.problem else "not registered"


def _poller_check(status: PollerStatus) -> tuple[str, dict[str, object]]:
    """Fetch mode: whether events come in, and the poller's own account. A passive instance
    (another one consumes this bot's events) is ready: it is the stand-by, and takes over when
    the other one stops."""
    since = None if status.since_success is None else round(status.since_success, 1)
    shown: dict[str, object] = {"state": status.state, "last_fetch_s": since}
    if status.reason:
        shown["reason"] = status.reason
    if status.problem:
        shown["problem"] = status.problem
    if status.state == "passive":
        return "ok", shown
    if status.state == "active" and not status.problem:
        return "ok", shown
    if status.state == "waiting":
        return f"waiting: {status.reason}", shown
    return status.problem or status.state, shown


async def _storage_answers(storage: Storage) -> bool:
    try:
        await storage.check()
    except Exception:
        log.warning("readyz.storage_failing", exc_info=True)
        return False
    return True


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    app = request.app
    core = app.get(CORE)
    if core is not None:
        app[METRICS].jobs_unfinished.set(await core.storage.unfinished())
    body = generate_latest(app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
